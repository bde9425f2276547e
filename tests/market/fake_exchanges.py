"""A local HTTP server speaking Binance USDⓈ-M, Bybit v5 and OKX v5 public REST from recorded bodies.

Unmodified ccxt clients are pointed at it by rewriting their `urls['api']` hosts. The bodies are
the fixtures under tests/fixtures/ccxt/<exchange>/ in each venue's own wire format; the server
only does what the venue's server does: serve the candles that exist at its clock (`now_ms`),
honour limit/paging parameters, stamp books with its time, and misbehave on demand (`faults`).
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
from aiohttp import web

from apextrader.contracts.payloads import Exchange
from apextrader.market.sources.ccxt_client import make_exchange, point_at

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ccxt"
T0 = 1_795_629_600_000  # open time of the first recorded candle (2026-11-25T18:00:00Z)
MINUTE = 60_000


@dataclass
class Faults:
    rate_limited: int = 0  # answer the next N requests with the venue's rate-limit error
    slow_s: float = 0.0  # delay every response (timeouts)
    down: bool = False  # 503 from the edge, as during an outage
    crossed: bool = False  # books come back crossed
    stale_book: bool = False  # books keep their recorded timestamp
    missing: set[int] = field(default_factory=set)  # candle open times the venue lacks
    frozen_at: int | None = None  # candles stop at this open time (venue stuck)


def _load(exchange: str, name: str) -> Any:
    return json.loads((FIXTURES / exchange / f"{name}.json").read_text())


class FakeExchanges:
    def __init__(self) -> None:
        self.now_ms = T0 + 250 * MINUTE + 30_000  # candle 250 is forming
        self.faults: dict[str, Faults] = {e: Faults() for e in ("binance", "bybit", "okx")}
        self.requests: list[str] = []
        #: Binance book update ids a websocket diff stream moved to (the REST snapshot follows it).
        self.book_update_ids: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""
        #: Changes applied to OKX's recorded liquidation body before serving it (malformed input).
        self.liquidation_edits: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{exchange}/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def client(self, exchange: Exchange, *, timeout_ms: int = 2_000) -> ccxt_async.Exchange:
        """An unmodified ccxt client whose API hosts point here."""
        # ccxt's limiter stays on, paced for a local server (the venue's 429s come from `faults`)
        client = make_exchange(exchange, timeout_ms=timeout_ms, rate_limit_ms=2)
        point_at(client, f"{self.base}/{exchange}")
        return client

    def advance(self, minutes: float) -> None:
        self.now_ms += int(minutes * MINUTE)

    def binance_book_id(self, symbol: str) -> int:
        recorded = int(_load("binance", f"depth_{symbol}")["lastUpdateId"])
        return self.book_update_ids.get(symbol, recorded)

    # -- serving --------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange, path = request.match_info["exchange"], request.match_info["path"]
        self.requests.append(f"{exchange} /{path}?{request.query_string}")
        f = self.faults[exchange]
        if f.slow_s:
            await asyncio.sleep(f.slow_s)
        if f.down:
            return web.Response(status=503, text="<html><body><h1>503 Service Unavailable</h1></body></html>",
                                content_type="text/html")  # fmt: skip
        if f.rate_limited > 0:
            f.rate_limited -= 1
            return self._rate_limited(exchange)
        q = dict(request.query)
        handler = getattr(self, f"_{exchange}", None)
        body = handler(path, q) if handler else None
        if body is None:
            return web.json_response({"error": f"no fixture for {path}"}, status=404)
        return web.json_response(body)

    def _rate_limited(self, exchange: str) -> web.Response:
        if exchange == "binance":
            msg = (
                "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. "
                "Please use the websocket for live updates to avoid polling the API."
            )
            return web.json_response({"code": -1003, "msg": msg}, status=429)
        if exchange == "bybit":  # Bybit answers 200 with its own code
            body = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "retExtInfo": {}}
            return web.json_response({**body, "time": self.now_ms})
        return web.json_response({"msg": "Too Many Requests", "code": "50011"}, status=429)

    def _available(self, exchange: str, rows: list[Any], ts_of: Any) -> list[Any]:
        """Candles that exist at the server's clock, oldest first."""
        f = self.faults[exchange]
        last = self.now_ms if f.frozen_at is None else min(self.now_ms, f.frozen_at)
        return [r for r in rows if int(ts_of(r)) <= last and int(ts_of(r)) not in f.missing]

    def _book_time(self, exchange: str, recorded: int) -> int:
        """Books carry the server's time (a minute old when the venue serves a stale cache)."""
        return self.now_ms - 60_000 if self.faults[exchange].stale_book else self.now_ms - 15

    def _binance(self, path: str, q: dict[str, str]) -> Any:
        if path == "fapi/v1/exchangeInfo":
            return _load("binance", "exchangeInfo")
        symbol = q.get("symbol", "")
        if path == "fapi/v1/klines":
            rows = self._available("binance", _load("binance", f"klines_{symbol}"), lambda r: r[0])
            if "startTime" in q:
                rows = [r for r in rows if r[0] >= int(q["startTime"])]
            if "endTime" in q:
                rows = [r for r in rows if r[0] <= int(q["endTime"])]
            limit = min(int(q.get("limit", 500)), 1500)
            return rows[:limit] if "startTime" in q else rows[-limit:]
        if path == "fapi/v1/depth":
            body = _load(
                "binance", f"depth_{symbol}_crossed" if self.faults["binance"].crossed else f"depth_{symbol}"
            )
            n = int(q.get("limit", 500))
            body["bids"], body["asks"] = body["bids"][:n], body["asks"][:n]
            body["lastUpdateId"] = self.binance_book_id(symbol)
            body["T"] = self._book_time("binance", body["T"])
            body["E"] = body["T"] + 8
            return body
        if path == "fapi/v1/premiumIndex":
            body = _load("binance", f"premiumIndex_{symbol}")
            body["time"] = self.now_ms
            return body
        return None

    def _bybit(self, path: str, q: dict[str, str]) -> Any:
        if path == "v5/market/instruments-info":
            body = _load("bybit", f"instruments-info_{q.get('category')}")
            if q.get("status") == "PreLaunch":  # nothing in pre-launch
                body["result"]["list"] = []
            return body
        symbol = q.get("symbol", "")
        if path == "v5/market/kline":
            body = _load("bybit", f"kline_{symbol}")
            rows = self._available("bybit", list(reversed(body["result"]["list"])), lambda r: r[0])
            if "start" in q:
                rows = [r for r in rows if int(r[0]) >= int(q["start"])]
            if "end" in q:
                rows = [r for r in rows if int(r[0]) <= int(q["end"])]
            limit = min(int(q.get("limit", 200)), 1000)
            rows = rows[:limit] if "start" in q and "end" not in q else rows[-limit:]
            body["result"]["list"] = list(reversed(rows))  # newest first, as Bybit sends them
            body["time"] = self.now_ms
            return body
        if path == "v5/market/orderbook":
            body = _load("bybit", f"orderbook_{symbol}")
            r = body["result"]
            n = int(q.get("limit", 25))
            r["b"], r["a"] = r["b"][:n], r["a"][:n]
            if self.faults["bybit"].crossed:
                r["b"] = [[str(float(r["a"][0][0]) + 1.0), "0.500"], *r["b"]]
            r["ts"] = self._book_time("bybit", r["ts"])
            r["cts"] = r["ts"] - 3
            body["time"] = self.now_ms
            return body
        if path == "v5/market/tickers":
            body = _load("bybit", f"tickers_{symbol}")
            body["time"] = self.now_ms
            return body
        return None

    def _okx(self, path: str, q: dict[str, str]) -> Any:
        if path == "api/v5/public/instruments":
            return _load("okx", f"instruments_{q.get('instType')}")
        inst = q.get("instId", "")
        if path in ("api/v5/market/candles", "api/v5/market/history-candles"):
            body = _load("okx", f"candles_{inst}")
            rows = self._available("okx", list(reversed(body["data"])), lambda r: r[0])
            if "after" in q:  # records earlier than `after`
                rows = [r for r in rows if int(r[0]) < int(q["after"])]
            if "before" in q:  # records newer than `before`
                rows = [r for r in rows if int(r[0]) > int(q["before"])]
            limit = min(int(q.get("limit", 100)), 300)
            rows = rows[-limit:]
            for r in rows:  # the newest candle at the server's clock is still forming
                r[8] = "0" if int(r[0]) + MINUTE > self.now_ms else "1"
            body["data"] = list(reversed(rows))
            return body
        if path == "api/v5/market/books":
            body = copy.deepcopy(_load("okx", f"books_{inst}"))
            book = body["data"][0]
            n = int(q.get("sz", 1))
            book["bids"], book["asks"] = book["bids"][:n], book["asks"][:n]
            if self.faults["okx"].crossed:
                book["bids"] = [[str(float(book["asks"][0][0]) + 0.5), "10", "0", "1"], *book["bids"]]
            book["ts"] = str(self._book_time("okx", int(book["ts"])))
            return body
        if path == "api/v5/public/funding-rate":
            body = _load("okx", f"funding-rate_{inst}")
            body["data"][0]["ts"] = str(self.now_ms)
            return body
        if path == "api/v5/public/liquidation-orders":
            body = _load("okx", f"liquidation-orders_{q.get('instFamily')}")
            for edit in self.liquidation_edits:
                edit(body)
            return body
        return None
