"""`PaperVenue`: the simulated exchange behind paper trading (books, bars, fees, latency).

It answers like a real venue: a fill (possibly partial, the rest cancelled: immediate-or-cancel),
a rejection (`no_liquidity`), or UNKNOWN while the market data it needs has not arrived yet (the
market feed is a separate consumer; right after a start it may trail the orders). Nothing rests at
a paper venue, so refresh and cancel only restate what was decided.
"""

from __future__ import annotations

from datetime import datetime

from apextrader.contracts.payloads import MarketSnapshot, OrderApproved
from apextrader.contracts.spec import ExecutionSpec
from apextrader.venues.base import OpenAtVenue, Outcome
from apextrader.venues.orders import OrderState
from apextrader.venues.paper import (
    BarHistory,
    BarMark,
    BookHistory,
    PaperEngine,
    bar_price,
    within,
)

Instrument = tuple[str, str]
#: Bars kept per instrument for the bar model.
BAR_HISTORY = 256


class PaperVenue:
    live = False

    def __init__(self, spec: ExecutionSpec, jitter_ms: float = 0.0) -> None:
        self.engine = PaperEngine(spec, jitter_ms)
        self.bar_model = spec.bar_fill
        self.books: dict[Instrument, BookHistory] = {}
        self.bars: dict[Instrument, BarHistory] = {}

    def observe(self, at: datetime, snapshot: MarketSnapshot) -> None:
        snap = snapshot
        if snap.quality != "ok" or snap.backfill:
            return
        key = (snap.exchange, snap.symbol)
        if snap.depth is not None:
            hist = self.books.get(key)
            if hist is None:
                hist = self.books[key] = BookHistory()
            hist.add(at, snap.depth)
        bars = self.bars.get(key)
        if bars is None:
            bars = self.bars[key] = BarHistory(BAR_HISTORY)
        bars.add(BarMark(at, snap.bar.open_time, snap.bar.open, snap.bar.close))

    def fee_rate(self, exchange: str) -> float:
        return self.engine.fee_rate(exchange)  # type: ignore[arg-type]

    async def submit(self, order: OrderApproved, approved_at: datetime, prior_filled: float) -> Outcome:
        if prior_filled > 0:
            # Filled before a restart but the rest was never cancelled: finish the order only.
            return Outcome(OrderState.CANCELLED, filled=prior_filled, message="order book depth exhausted")
        key = (order.exchange, order.symbol)
        arrival = approved_at + self.engine.latency.delay(order.client_order_id)
        if key in self.books:
            return self._book_fill(order, arrival)
        if key in self.bars:
            return self._bar_fill(order, arrival)
        return Outcome.not_known(f"no market data for {order.symbol} on {order.exchange} yet")

    def _book_fill(self, order: OrderApproved, arrival: datetime) -> Outcome:
        book = self.books[(order.exchange, order.symbol)].at(arrival)
        if book is None:
            return Outcome.not_known(f"no order book for {order.symbol} on {order.exchange} yet")
        fill = self.engine.fill(order, book)
        limit = self._limit(order)
        if fill is None:
            why = "nothing on the book" + (
                "" if limit is None else f" within {limit:.6g} (the price moved away)"
            )
            return Outcome(OrderState.REJECTED, reason="no_liquidity", message=why)
        if fill.complete:
            return Outcome(OrderState.FILLED, filled=fill.filled, avg_price=fill.avg_price, fee=fill.fee)
        why = (
            "limit IOC remainder"
            if order.order_type == "limit"
            else "order book depth exhausted"
            if limit is None
            else "depth within the price protection exhausted"
        )
        return Outcome(
            OrderState.CANCELLED, filled=fill.filled, avg_price=fill.avg_price, fee=fill.fee, message=why
        )

    def _bar_fill(self, order: OrderApproved, arrival: datetime) -> Outcome:
        bars = self.bars[(order.exchange, order.symbol)]
        base = self._bar_base(order, arrival, bars)
        if isinstance(base, Outcome):
            return base
        price = bar_price(order, base, self.bar_model)
        limit = self._limit(order)
        if not within(order, price, limit):
            assert limit is not None
            return Outcome(
                OrderState.REJECTED,
                reason="no_liquidity",
                message=f"bar price {price:.6g} beyond {limit:.6g} (the price moved away)",
                fill_model="bar",
            )
        fee = order.amount * price * self.engine.fee_rate(order.exchange)
        return Outcome(OrderState.FILLED, filled=order.amount, avg_price=price, fee=fee, fill_model="bar")

    def _bar_base(self, order: OrderApproved, arrival: datetime, bars: BarHistory) -> float | Outcome:
        """The bar price the model fills at, never one from before the order reached the venue:
        `next_open` is the open of the first bar that opens after the order's arrival (and after
        its signal's bar); `close` is the close of the bar in effect at arrival."""
        if self.bar_model.price == "close":
            mark = bars.at(arrival)
            if mark is None:
                return Outcome.not_known(f"no bar for {order.symbol} on {order.exchange} yet")
            return mark.close
        after = order.bar_time
        nxt = bars.first_after(arrival)
        while nxt is not None and after is not None and nxt.open_time <= after:
            nxt = bars.after(nxt.open_time)
        if nxt is None:
            return Outcome.not_known(
                f"waiting for the next bar of {order.symbol} on {order.exchange} to open"
            )
        return nxt.open

    def _limit(self, order: OrderApproved) -> float | None:
        return order.limit_price if order.order_type == "limit" else self.engine.protection(order)

    async def refresh(self, order: OrderApproved, exchange_order_id: str | None) -> Outcome:
        return Outcome.not_known("nothing rests at the paper venue")

    async def cancel(self, order: OrderApproved, exchange_order_id: str | None) -> Outcome:
        return Outcome(OrderState.CANCELLED, message="cancelled")

    async def open_orders(self, symbols: list[Instrument]) -> list[OpenAtVenue]:
        return []

    async def close(self) -> None:
        return None
