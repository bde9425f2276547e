"""A local Binance USDⓈ-M futures REST server speaking the exchange's own wire format (bodies as the
real API returns them), so the unmodified ccxt `binanceusdm` can be pointed at it. It keeps orders
by client order id and can be told how to answer the next submits."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

EXCHANGE_INFO: dict[str, Any] = {
    "timezone": "UTC",
    "serverTime": 1767225600000,
    "futuresType": "U_MARGINED",
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}
    ],
    "exchangeFilters": [],
    "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "pair": "BTCUSDT",
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": "BTC",
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": 2,
            "quantityPrecision": 3,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": ["PoW"],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "minPrice": "261.10",
                    "maxPrice": "809484",
                    "filterType": "PRICE_FILTER",
                    "tickSize": "0.10",
                },
                {"stepSize": "0.001", "filterType": "LOT_SIZE", "maxQty": "1000", "minQty": "0.001"},
                {"stepSize": "0.001", "filterType": "MARKET_LOT_SIZE", "maxQty": "120", "minQty": "0.001"},
                {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
                {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
                {"notional": "100", "filterType": "MIN_NOTIONAL"},
                {
                    "multiplierDown": "0.9500",
                    "multiplierUp": "1.0500",
                    "multiplierDecimal": "4",
                    "filterType": "PERCENT_PRICE",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }
    ],
}

ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "insufficient": (400, {"code": -2019, "msg": "Margin is insufficient."}),
    "ratelimit": (
        429,
        {"code": -1003, "msg": "Too many requests; current limit of IP is 2400 requests per minute."},
    ),
    "reject": (
        400,
        {
            "code": -4164,
            "msg": "Order's notional must be no smaller than 100 (unless you choose reduce only).",
        },
    ),
    "not_found": (400, {"code": -2013, "msg": "Order does not exist."}),
}


@dataclass
class FakeBinance:
    price: float = 50_000.0
    #: How to answer the next submits: "ok", "partial", "open", "insufficient", "ratelimit", "reject",
    #: "accept_then_hang" (records the order, answers too late: the client times out),
    #: "drop" (answers too late and never records the order: lost before the matching engine).
    script: deque[str] = field(default_factory=deque)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    submits: int = 0
    requests: list[tuple[str, str, dict[str, str], str]] = field(default_factory=list)
    hang_s: float = 2.0
    #: Seconds a new order stays invisible to queries (order, openOrders, allOrders) after it is
    #: recorded: the venue's read side trailing its matching engine.
    lookup_lag_s: float = 0.0
    _visible_at: dict[str, float] = field(default_factory=dict)
    _next_id: int = 4_000_000

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/fapi/v1/exchangeInfo", self.exchange_info)
        app.router.add_post("/fapi/v1/order", self.new_order)
        app.router.add_get("/fapi/v1/order", self.query_order)
        app.router.add_delete("/fapi/v1/order", self.cancel_order)
        app.router.add_get("/fapi/v1/openOrders", self.open_orders)
        app.router.add_get("/fapi/v1/allOrders", self.all_orders)
        return app

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.can_read_body:
            body = await request.text()
            for part in body.split("&"):
                if "=" in part:
                    k, v = part.split("=", 1)
                    params[k] = v
        self.requests.append((request.method, request.path, dict(request.headers), json.dumps(params)))
        return params

    @staticmethod
    def _json(status: int, body: Any) -> web.Response:
        return web.json_response(body, status=status)

    async def exchange_info(self, request: web.Request) -> web.Response:
        await self._params(request)
        return self._json(200, EXCHANGE_INFO)

    def _order(self, p: dict[str, str], status: str, executed: float) -> dict[str, Any]:
        self._next_id += 1
        now = int(time.time() * 1000)
        qty = float(p["quantity"])
        return {
            "orderId": self._next_id,
            "symbol": p["symbol"],
            "status": status,
            "clientOrderId": p["newClientOrderId"],
            "price": p.get("price", "0"),
            "avgPrice": f"{self.price:.2f}" if executed > 0 else "0.00",
            "origQty": f"{qty:.3f}",
            "executedQty": f"{executed:.3f}",
            "cumQty": f"{executed:.3f}",
            "cumQuote": f"{executed * self.price:.5f}",
            "timeInForce": p.get("timeInForce", "GTC"),
            "type": p["type"],
            "reduceOnly": p.get("reduceOnly", "false") == "true",
            "closePosition": False,
            "side": p["side"],
            "positionSide": "BOTH",
            "stopPrice": "0.00",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": p["type"],
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": now,
            "time": now,
        }

    async def new_order(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        action = self.script.popleft() if self.script else "ok"
        if action == "drop":
            await asyncio.sleep(self.hang_s)
            return self._json(*ERRORS["not_found"])
        if action in ERRORS:
            status, body = ERRORS[action]
            return self._json(status, body)
        coid = p["newClientOrderId"]
        if coid in self.orders:  # Binance refuses a duplicate client order id
            return self._json(400, {"code": -4116, "msg": "ClientOrderId is duplicated."})
        self.submits += 1
        qty = float(p["quantity"])
        status, executed = {
            "ok": ("FILLED", qty),
            "partial": ("PARTIALLY_FILLED", round(qty / 2, 3)),
            "open": ("NEW", 0.0),
            "accept_then_hang": ("FILLED", qty),
        }[action]
        order = self._order(p, status, executed)
        self.orders[coid] = order
        self._visible_at[coid] = time.monotonic() + self.lookup_lag_s
        if action == "accept_then_hang":
            await asyncio.sleep(self.hang_s)
        return self._json(200, order)

    def visible(self) -> list[dict[str, Any]]:
        """Orders the read side already shows."""
        now = time.monotonic()
        return [o for c, o in self.orders.items() if self._visible_at.get(c, 0.0) <= now]

    def _find(self, p: dict[str, str]) -> dict[str, Any] | None:
        if "origClientOrderId" in p:
            return next((o for o in self.visible() if o["clientOrderId"] == p["origClientOrderId"]), None)
        return next((o for o in self.visible() if str(o["orderId"]) == p.get("orderId")), None)

    async def query_order(self, request: web.Request) -> web.Response:
        order = self._find(await self._params(request))
        if order is None:
            return self._json(*ERRORS["not_found"])
        return self._json(200, order)

    async def cancel_order(self, request: web.Request) -> web.Response:
        order = self._find(await self._params(request))
        if order is None:
            return self._json(400, {"code": -2011, "msg": "Unknown order sent."})
        order["status"] = "CANCELED"
        return self._json(200, order)

    async def open_orders(self, request: web.Request) -> web.Response:
        await self._params(request)
        return self._json(200, [o for o in self.visible() if o["status"] in ("NEW", "PARTIALLY_FILLED")])

    async def all_orders(self, request: web.Request) -> web.Response:
        await self._params(request)
        return self._json(200, self.visible())
