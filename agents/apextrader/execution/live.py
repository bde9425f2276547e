"""Live orders through ccxt (async), idempotent by client order id.

Before submitting, the order is looked up by its client order id (the `order.approved` event id), so
a redelivered event or a restarted agent never submits twice. Errors map to `order.rejected`
reasons; only safe retries happen: a rate-limited submit was never accepted and is retried after a
back-off, a submit whose outcome is unknown (timeout, dropped connection) is looked up first and
retried only when the exchange does not know it. Exception text is redacted of every secret.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import ccxt.async_support as ccxt

from apextrader.contracts.payloads import OrderApproved
from apextrader.execution.guard import Credentials, install_redaction, redact
from apextrader.execution.orders import OrderState

RejectReason = Literal["insufficient_funds", "rate_limit", "network", "exchange_rejected", "invalid"]
Lookup = Literal["by_client_id", "scan"]

#: How each exchange finds an order by client order id: Binance and OKX query it directly; Bybit's
#: unified account queries only by exchange id, so its recent open and closed orders are scanned.
LOOKUP: dict[str, Lookup] = {"binance": "by_client_id", "okx": "by_client_id", "bybit": "scan"}
#: Recent orders a scan looks through.
SCAN_LIMIT = 100

#: ccxt classes per exchange id, configured for USDT-margined linear perpetuals.
_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "binance": ("binanceusdm", {}),
    "bybit": ("bybit", {"defaultType": "swap"}),
    "okx": ("okx", {"defaultType": "swap"}),
}
_STATUS: dict[str, OrderState] = {
    "open": OrderState.NEW,
    "closed": OrderState.FILLED,
    "canceled": OrderState.CANCELLED,
    "cancelled": OrderState.CANCELLED,
    "expired": OrderState.CANCELLED,
    "rejected": OrderState.REJECTED,
}


def build_exchange(
    exchange: str,
    creds: Credentials | None,
    timeout_ms: int = 10_000,
    session: aiohttp.ClientSession | None = None,
) -> ccxt.Exchange:
    """An unmodified ccxt exchange with the credentials; nothing is logged. `session` (ccxt's own
    config option) lets a caller supply the HTTP session, e.g. with a custom resolver or CA."""
    cls_name, options = _CLASSES[exchange]
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms, "options": dict(options)}
    # Wallet currencies need a private sapi call we have no use for; markets carry what orders need.
    config["options"]["fetchCurrencies"] = False
    if creds is not None:
        config["apiKey"] = creds.api_key.get_secret_value()
        config["secret"] = creds.secret.get_secret_value()
        if creds.password is not None:
            config["password"] = creds.password.get_secret_value()
    if session is not None:
        config["session"] = session
    exchange_cls: type[ccxt.Exchange] = getattr(ccxt, cls_name)
    return exchange_cls(config)


@dataclass(frozen=True)
class LiveOutcome:
    state: OrderState
    exchange_order_id: str | None = None
    filled: float = 0.0
    avg_price: float | None = None
    fee: float | None = None
    reason: RejectReason | None = None
    message: str = ""
    retryable: bool = False
    #: The order already existed at the exchange (redelivery or restart): nothing was submitted.
    recovered: bool = False


def outcome_of(raw: dict[str, Any], recovered: bool = False) -> LiveOutcome:
    status = _STATUS.get(str(raw.get("status")), OrderState.NEW)
    filled = float(raw.get("filled") or 0.0)
    if status is OrderState.NEW and filled > 0:
        status = OrderState.PARTIALLY_FILLED
    fee = raw.get("fee") or {}
    return LiveOutcome(
        state=status,
        exchange_order_id=str(raw["id"]) if raw.get("id") is not None else None,
        filled=filled,
        avg_price=float(raw["average"]) if raw.get("average") else None,
        fee=float(fee["cost"]) if fee.get("cost") is not None else None,
        recovered=recovered,
    )


class LiveExecutor:
    def __init__(
        self,
        exchanges: dict[str, ccxt.Exchange],
        secrets: list[str],
        max_retries: int = 3,
        backoff_s: float = 0.5,
        lookup: dict[str, Lookup] | None = None,
    ) -> None:
        self.exchanges = exchanges
        self._secrets = secrets
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.lookup_mode = {**LOOKUP, **(lookup or {})}
        install_redaction(secrets)

    def _reject(self, reason: RejectReason, exc: BaseException, retryable: bool = False) -> LiveOutcome:
        msg = redact(f"{type(exc).__name__}: {exc}", self._secrets)[:500]
        return LiveOutcome(OrderState.REJECTED, reason=reason, message=msg, retryable=retryable)

    async def lookup(self, order: OrderApproved) -> dict[str, Any] | None:
        """The exchange's record of this client order id, or None if it has none. Lookups are safe to
        retry, so network errors are retried here; the last one propagates."""
        ex = self.exchanges[order.exchange]
        for attempt in range(self.max_retries + 1):
            try:
                if self.lookup_mode.get(order.exchange, "scan") == "scan":
                    return await self._scan(ex, order)
                raw: dict[str, Any] = await ex.fetch_order(
                    None, order.symbol, {"clientOrderId": order.client_order_id}
                )
                return raw
            except ccxt.OrderNotFound:
                return None
            except ccxt.NetworkError:
                if attempt == self.max_retries:
                    raise
                await asyncio.sleep(self.backoff_s * 2**attempt)
        return None

    @staticmethod
    async def _scan(ex: ccxt.Exchange, order: OrderApproved) -> dict[str, Any] | None:
        """Find the order among the symbol's open, then recent closed orders."""
        for fetch in (ex.fetch_open_orders, ex.fetch_closed_orders):
            for raw in await fetch(order.symbol, None, SCAN_LIMIT):
                if raw.get("clientOrderId") == order.client_order_id:
                    return dict(raw)
        return None

    async def submit(self, order: OrderApproved) -> LiveOutcome:
        ex = self.exchanges[order.exchange]
        try:
            existing = await self.lookup(order)
        except ccxt.NetworkError as exc:
            # We cannot know whether it exists: do not submit blind; the event is retried later.
            return self._reject("network", exc, retryable=True)
        except ccxt.ExchangeError as exc:
            return self._reject("exchange_rejected", exc)
        if existing is not None:
            return outcome_of(existing, recovered=True)
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        if order.reduce_only:
            params["reduceOnly"] = True
        price = order.limit_price if order.order_type == "limit" else None
        last: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            try:
                raw = await ex.create_order(
                    order.symbol, order.order_type, order.side, order.amount, price, params
                )
                return outcome_of(raw)
            except ccxt.InsufficientFunds as exc:
                return self._reject("insufficient_funds", exc)
            except ccxt.DDoSProtection as exc:  # includes RateLimitExceeded: never accepted, safe to retry
                last = exc
            except ccxt.NetworkError as exc:  # timeout or dropped connection: outcome unknown
                last = exc
                try:
                    found = await self.lookup(order)
                except ccxt.BaseError:
                    return self._reject("network", exc, retryable=True)
                if found is not None:
                    return outcome_of(found, recovered=True)
            except ccxt.InvalidOrder as exc:
                return self._reject("exchange_rejected", exc)
            except ccxt.ExchangeError as exc:
                return self._reject("exchange_rejected", exc)
            if attempt < self.max_retries:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        assert last is not None
        reason: RejectReason = "rate_limit" if isinstance(last, ccxt.DDoSProtection) else "network"
        return self._reject(reason, last, retryable=True)

    async def refresh(self, order: OrderApproved, exchange_order_id: str) -> LiveOutcome:
        raw = await self.exchanges[order.exchange].fetch_order(exchange_order_id, order.symbol)
        return outcome_of(raw)

    async def cancel(self, order: OrderApproved, exchange_order_id: str) -> LiveOutcome:
        raw = await self.exchanges[order.exchange].cancel_order(exchange_order_id, order.symbol)
        return outcome_of(raw)

    async def close(self) -> None:
        for ex in self.exchanges.values():
            await ex.close()
