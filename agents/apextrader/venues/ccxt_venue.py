"""`CcxtVenue`: live orders through ccxt (async), idempotent by client order id.

The client order id is the `order.approved` event id. Rules that keep money safe:

- Before any `create_order` the order is looked up by client order id, so a redelivered event or
  a restarted agent never submits twice.
- A submit whose outcome is unknown (timeout, dropped connection, 5xx: the venue may have accepted
  it) answers UNKNOWN, never a rejection. The caller keeps the exposure reserved and asks again;
  each new attempt looks the order up first. A second `create_order` for the same client order id
  happens only when the venue has said "not found" for a whole grace period after the last
  attempt (lookups can lag behind the matching engine). An order approved before this process
  started may have been sent by the previous one: its grace runs from the start.
- Errors that prove the venue refused the order map to `order.rejected` reasons; a rate-limited
  submit was never accepted and is retried after a back-off. Exception text is redacted of every
  secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
import ccxt.async_support as ccxt

from apextrader.contracts.envelope import utcnow
from apextrader.contracts.payloads import OrderApproved
from apextrader.runtime.redaction import install_redaction, redact
from apextrader.venues.base import OpenAtVenue, Outcome, RejectReason
from apextrader.venues.credentials import Credentials
from apextrader.venues.orders import OrderState
from apextrader.venues.profiles import Lookup, profile

#: Recent orders a scan looks through.
SCAN_LIMIT = 100

_STATUS: dict[str, OrderState] = {
    "open": OrderState.NEW,
    "closed": OrderState.FILLED,
    "canceled": OrderState.CANCELLED,
    "cancelled": OrderState.CANCELLED,
    "expired": OrderState.CANCELLED,
    "rejected": OrderState.REJECTED,
}
#: Answers that prove the request never reached the matching engine (safe to retry at once).
_NOT_ACCEPTED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)


def build_exchange(
    exchange: str,
    creds: Credentials | None,
    timeout_ms: int = 10_000,
    session: aiohttp.ClientSession | None = None,
) -> ccxt.Exchange:
    """An unmodified ccxt trading client with the credentials; nothing is logged. `session` (ccxt's
    own config option) lets a caller supply the HTTP session, e.g. with a custom resolver or CA."""
    p = profile(exchange)
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": timeout_ms,
        "options": dict(p.trade_options),
    }
    # Wallet currencies need a private sapi call we have no use for; markets carry what orders need.
    config["options"]["fetchCurrencies"] = False
    if creds is not None:
        config["apiKey"] = creds.api_key.get_secret_value()
        config["secret"] = creds.secret.get_secret_value()
        if creds.password is not None:
            config["password"] = creds.password.get_secret_value()
    if session is not None:
        config["session"] = session
    exchange_cls: type[ccxt.Exchange] = getattr(ccxt, p.trade_class)
    return exchange_cls(config)


def outcome_of(raw: Mapping[str, Any], recovered: bool = False) -> Outcome:
    status = _STATUS.get(str(raw.get("status")), OrderState.NEW)
    filled = float(raw.get("filled") or 0.0)
    if status is OrderState.NEW and filled > 0:
        status = OrderState.PARTIALLY_FILLED
    fee = raw.get("fee") or {}
    return Outcome(
        state=status,
        exchange_order_id=str(raw["id"]) if raw.get("id") is not None else None,
        filled=filled,
        avg_price=float(raw["average"]) if raw.get("average") else None,
        fee=float(fee["cost"]) if fee.get("cost") is not None else None,
        recovered=recovered,
    )


class CcxtVenue:
    live = True

    def __init__(
        self,
        exchanges: dict[str, ccxt.Exchange],
        secrets: list[str],
        *,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        grace_s: float = 10.0,
        fee_rates: Mapping[str, float] | None = None,
        lookup: Mapping[str, Lookup] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.exchanges = exchanges
        self._secrets = secrets
        self.max_retries, self.backoff_s, self.grace_s = max_retries, backoff_s, grace_s
        self.lookup_mode = {ex: profile(ex).lookup for ex in exchanges} | dict(lookup or {})
        self._fees = dict(fee_rates or {})
        self._clock = clock
        self._started, self._started_wall = clock(), utcnow()
        #: client order id -> clock time of the last create_order sent for it.
        self._sent: dict[str, float] = {}
        install_redaction(secrets)

    def observe(self, at: datetime, snapshot: object) -> None:
        return None  # the venue's own book decides

    def fee_rate(self, exchange: str) -> float:
        return self._fees.get(exchange, 5e-4)

    def _text(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._secrets)[:500]

    def _reject(self, reason: RejectReason, exc: BaseException, retryable: bool = False) -> Outcome:
        return Outcome(OrderState.REJECTED, reason=reason, message=self._text(exc), retryable=retryable)

    def _unknown(self, what: str, exc: BaseException | None = None) -> Outcome:
        return Outcome.not_known(what + (f" ({self._text(exc)})" if exc is not None else ""))

    async def lookup(self, order: OrderApproved) -> dict[str, Any] | None:
        """The venue's record of this client order id, or None if it has none. Lookups are safe to
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

    def _maybe_sent_at(self, order: OrderApproved, approved_at: datetime) -> float | None:
        """When this order may last have been sent (None: never, by anyone)."""
        sent = self._sent.get(order.client_order_id)
        if sent is None and approved_at < self._started_wall:
            return self._started  # the previous process may have sent it just before it stopped
        return sent

    async def submit(self, order: OrderApproved, approved_at: datetime, prior_filled: float) -> Outcome:
        sent_at = self._maybe_sent_at(order, approved_at)
        asked = self._clock()  # "not found" proves something only for a question asked after the grace
        try:
            existing = await self.lookup(order)
        except ccxt.NetworkError as exc:
            return self._unknown("the venue could not be asked whether it has the order", exc)
        except ccxt.ExchangeError as exc:
            if sent_at is not None:
                return self._unknown("the lookup of a possibly sent order failed", exc)
            return self._reject("exchange_rejected", exc)
        if existing is not None:
            return outcome_of(existing, recovered=True)
        if sent_at is not None and asked - sent_at < self.grace_s:
            waited = asked - sent_at
            return self._unknown(
                f"not found {waited:.1f}s after it may have been sent; looking again "
                f"(resubmitted only after {self.grace_s:g}s of 'not found')"
            )
        return await self._create(order)

    async def _create(self, order: OrderApproved) -> Outcome:
        resend = order.client_order_id in self._sent
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        if order.reduce_only:
            params["reduceOnly"] = True
        price = order.limit_price if order.order_type == "limit" else None
        last: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            try:
                return outcome_of(await self._send(order, price, params))
            except ccxt.InsufficientFunds as exc:
                return self._reject("insufficient_funds", exc)
            except ccxt.DuplicateOrderId as exc:  # it exists after all: the lookup lagged
                return self._unknown("the venue already has this client order id", exc)
            except _NOT_ACCEPTED as exc:
                last = exc
            except ccxt.NetworkError as exc:  # timeout, dropped connection, 5xx: the venue may have it
                return self._unknown("submit outcome unknown", exc)
            except ccxt.ExchangeError as exc:
                # Binance answers a duplicate client order id with a plain InvalidOrder: on a resend,
                # the refusal may mean "you have it already". Only the lookup can say.
                return await self._refused(order, exc) if resend else self._reject("exchange_rejected", exc)
            if attempt < self.max_retries:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        assert last is not None
        return self._reject("rate_limit", last, retryable=True)

    async def _send(self, order: OrderApproved, price: float | None, params: dict[str, Any]) -> Any:
        try:
            return await self.exchanges[order.exchange].create_order(
                order.symbol, order.order_type, order.side, order.amount, price, params
            )
        finally:
            # The grace runs from the end of the attempt: a request can reach the venue late.
            self._sent[order.client_order_id] = self._clock()

    async def _refused(self, order: OrderApproved, exc: BaseException) -> Outcome:
        try:
            found = await self.lookup(order)
        except ccxt.BaseError as lookup_exc:
            return self._unknown("a resend was refused and the lookup failed", lookup_exc)
        return (
            outcome_of(found, recovered=True) if found is not None else self._reject("exchange_rejected", exc)
        )

    async def refresh(self, order: OrderApproved, exchange_order_id: str | None) -> Outcome:
        try:
            if exchange_order_id is None:
                raw = await self.lookup(order)
                if raw is None:
                    return self._unknown("the venue does not know the order (yet)")
                return outcome_of(raw, recovered=True)
            return outcome_of(
                await self.exchanges[order.exchange].fetch_order(exchange_order_id, order.symbol)
            )
        except (ccxt.NetworkError, ccxt.OrderNotFound) as exc:
            return self._unknown("refresh failed", exc)

    async def cancel(self, order: OrderApproved, exchange_order_id: str | None) -> Outcome:
        try:
            if exchange_order_id is None:
                return await self.refresh(order, None)
            raw = await self.exchanges[order.exchange].cancel_order(exchange_order_id, order.symbol)
            return outcome_of(raw)
        except ccxt.OrderNotFound:  # already done: its final state says how
            return await self.refresh(order, exchange_order_id)
        except ccxt.NetworkError as exc:
            return self._unknown("cancel outcome unknown", exc)

    async def open_orders(self, symbols: list[tuple[str, str]]) -> list[OpenAtVenue]:
        out: list[OpenAtVenue] = []
        for exchange, symbol in sorted(set(symbols)):
            ex = self.exchanges.get(exchange)
            if ex is None:
                continue
            await ex.load_markets()
            if symbol not in ex.markets:
                continue  # not listed there: nothing can be open
            for raw in await ex.fetch_open_orders(symbol):
                coid, oid = raw.get("clientOrderId"), raw.get("id")
                if coid and oid is not None:
                    out.append(OpenAtVenue(str(coid), str(oid), outcome_of(raw, recovered=True)))
        return out

    async def close(self) -> None:
        for ex in self.exchanges.values():
            await ex.close()
