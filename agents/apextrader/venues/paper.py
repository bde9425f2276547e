"""Paper execution: fills walked through the order-book depth in effect when the order reaches the
(simulated) exchange, fees by the spec's exchange tier, slippage against the mid at decision time.

Market orders walk every level until filled; when the depth runs out the rest is cancelled (a
partial fill). Limit orders are immediate-or-cancel at the limit price. Both pay the taker fee: they
take liquidity.

A market whose snapshots never carried depth (plain OHLCV replay, a venue without a book) fills on
the bar model instead (`execution.barFill`, docs/risk-and-execution.md): the next bar's open (or the decision
bar's close) plus half the spread and the slippage, against the trader, whole amount, same fees and
the same limit / price-protection bounds.
"""

from __future__ import annotations

import bisect
import hashlib
from array import array
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from apextrader.contracts.payloads import BookLevel, Exchange, OrderApproved, OrderBook
from apextrader.contracts.spec import BarFillSpec, ExecutionSpec


@dataclass(frozen=True)
class Walk:
    filled: float
    avg_price: float
    levels: int


def walk_book(
    book: OrderBook, side: Literal["buy", "sell"], amount: float, limit: float | None = None
) -> Walk:
    """Take `amount` from the asks (buy) or bids (sell), best first, not past `limit`."""
    levels = book.asks if side == "buy" else book.bids
    left, cost, used = amount, 0.0, 0
    for level in levels:
        if left <= 0:
            break
        if limit is not None and (level.price > limit if side == "buy" else level.price < limit):
            break
        take = min(left, level.amount)
        cost += take * level.price
        left -= take
        used += 1
    if left <= amount * 1e-12:
        left = 0.0  # float residue of a complete fill
    filled = amount - left
    return Walk(filled, cost / filled if filled > 0 else 0.0, used)


def slippage_bps(side: Literal["buy", "sell"], avg_price: float, mid: float) -> float:
    """Signed slippage against the trader in bps: positive = paid more (buy) / got less (sell)."""
    sign = 1.0 if side == "buy" else -1.0
    return sign * (avg_price - mid) / mid * 1e4


def adverse_bps(signed_bps: float) -> float:
    """What the `apex_slippage_bps` histogram records: price improvement counts as 0."""
    return max(0.0, signed_bps)


@dataclass(frozen=True)
class LatencyModel:
    """Decision-to-exchange delay: a base plus a deterministic per-order jitter (hash of the client
    order id), so a replayed order sees the same book."""

    base_ms: float
    jitter_ms: float = 0.0

    def delay(self, client_order_id: str) -> timedelta:
        frac = int(hashlib.sha256(client_order_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return timedelta(milliseconds=self.base_ms + self.jitter_ms * frac)


class BookHistory:
    """Recent order books of one instrument by wall time, to find the one in effect at a moment.

    Books are kept as flat float arrays (price, amount, price, amount, ...), ~0.4 KB each instead of
    ~11 KB as pydantic models: 256 books x 6 instruments were 17 MB of the execution agent's RSS
    (docs/performance.md, "Memory"). A book is rebuilt, with the same floats, only when asked for.
    """

    def __init__(self, maxlen: int = 256) -> None:
        self._times: deque[datetime] = deque(maxlen=maxlen)
        self._books: deque[tuple[array[float], array[float]]] = deque(maxlen=maxlen)

    def add(self, at: datetime, book: OrderBook) -> None:
        if self._times and at < self._times[-1]:
            return  # out-of-order snapshot: keep the history monotonic
        self._times.append(at)
        self._books.append((_flat(book.bids), _flat(book.asks)))

    def at(self, moment: datetime) -> OrderBook | None:
        """The latest book published at or before `moment` (the oldest one if all are later)."""
        if not self._books:
            return None
        i = bisect.bisect_right(self._times, moment)
        return _book(*self._books[max(0, i - 1)])

    @property
    def latest(self) -> OrderBook | None:
        return _book(*self._books[-1]) if self._books else None


def _flat(levels: list[BookLevel]) -> array[float]:
    return array("d", [x for level in levels for x in (level.price, level.amount)])


def _levels(flat: array[float]) -> list[BookLevel]:
    return [BookLevel(price=flat[i], amount=flat[i + 1]) for i in range(0, len(flat), 2)]


def _book(bids: array[float], asks: array[float]) -> OrderBook:
    return OrderBook(bids=_levels(bids), asks=_levels(asks))


@dataclass(frozen=True)
class PaperFill:
    filled: float
    avg_price: float
    fee: float
    slippage_bps: float
    remaining: float
    levels: int

    @property
    def complete(self) -> bool:
        return self.remaining <= 0


class PaperEngine:
    def __init__(self, spec: ExecutionSpec, jitter_ms: float = 0.0) -> None:
        self.spec = spec
        self.latency = LatencyModel(spec.latency_ms, jitter_ms)

    def fee_rate(self, exchange: Exchange) -> float:
        """Taker fee of the exchange's tier in the spec, as a fraction."""
        return float(self.spec.taker_fee_bps.get(exchange, 5.0)) / 1e4

    def protection(self, order: OrderApproved) -> float | None:
        """The worst price a market entry may take (`priceProtectionBps` from the mid at decision);
        None for exits (reduce-only: cutting risk is never limited) or when protection is off."""
        bps = self.spec.price_protection_bps
        if bps is None or order.reduce_only:
            return None
        sign = 1.0 if order.side == "buy" else -1.0
        return order.mid_at_decision * (1.0 + sign * bps / 1e4)

    def fill(self, order: OrderApproved, book: OrderBook) -> PaperFill | None:
        """Fill `order` against `book`; None when nothing at all can be taken (no liquidity)."""
        limit = order.limit_price if order.order_type == "limit" else self.protection(order)
        walk = walk_book(book, order.side, order.amount, limit)
        if walk.filled <= 0:
            return None
        return PaperFill(
            filled=walk.filled,
            avg_price=walk.avg_price,
            fee=walk.filled * walk.avg_price * self.fee_rate(order.exchange),
            slippage_bps=slippage_bps(order.side, walk.avg_price, order.mid_at_decision),
            remaining=max(0.0, order.amount - walk.filled),
            levels=walk.levels,
        )


@dataclass(frozen=True)
class BarMark:
    at: datetime  # wall-clock publish time
    open_time: datetime
    open: float
    close: float


class BarHistory:
    """Recent bars of one instrument (forming or closed), by publish time."""

    def __init__(self, maxlen: int = 256) -> None:
        self.maxlen = maxlen
        self._bars: deque[BarMark] = deque(maxlen=maxlen)

    def add(self, mark: BarMark) -> None:
        if self._bars and mark.open_time < self._bars[-1].open_time:
            return  # out of order: keep the market clock monotonic
        if self._bars and mark.open_time == self._bars[-1].open_time:
            first = self._bars.pop()  # the same bar, later: keep when it opened and the newest close
            mark = BarMark(first.at, mark.open_time, first.open, mark.close)
        self._bars.append(mark)

    def at(self, moment: datetime) -> BarMark | None:
        """The newest bar published at or before `moment`."""
        best = None
        for b in self._bars:
            if b.at > moment:
                break
            best = b
        return best

    def after(self, open_time: datetime) -> BarMark | None:
        """The first bar that opened after `open_time`."""
        return next((b for b in self._bars if b.open_time > open_time), None)

    def first_after(self, moment: datetime) -> BarMark | None:
        """The first bar published after `moment`."""
        return next((b for b in self._bars if b.at > moment), None)


def bar_price(order: OrderApproved, price: float, model: BarFillSpec) -> float:
    """A bar's price moved against the trader by half the spread and the slippage."""
    bps = model.spread_bps / 2 + model.slippage_bps
    sign = 1.0 if order.side == "buy" else -1.0
    return price * (1.0 + sign * bps / 1e4)


def within(order: OrderApproved, price: float, limit: float | None) -> bool:
    if limit is None:
        return True
    return price <= limit if order.side == "buy" else price >= limit
