"""The track's book: positions from fills, marks from snapshots, PnL, drawdown and daily loss, and
the orders approved but not yet settled (counted as exposure so a burst of signals cannot outrun
the fills).

Updates are idempotent: a fill is applied once per fill event id, so history replayed at start and
then redelivered does not double a position.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date

Instrument = tuple[str, str]  # (exchange, ccxt symbol)

_EPS = 1e-12
_SEEN_MAX = 200_000


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


@dataclass
class Position:
    """Signed base quantity (long > 0) and its average entry price."""

    qty: float = 0.0
    avg_price: float = 0.0

    def apply(self, signed_qty: float, price: float) -> float:
        """Apply a fill; returns the PnL it realises."""
        if abs(self.qty) < _EPS or _sign(self.qty) == _sign(signed_qty):
            new = self.qty + signed_qty
            self.avg_price = (abs(self.qty) * self.avg_price + abs(signed_qty) * price) / abs(new)
            self.qty = new
            return 0.0
        closing = min(abs(signed_qty), abs(self.qty))
        realised = closing * (price - self.avg_price) * _sign(self.qty)
        new = self.qty + signed_qty
        if abs(new) < _EPS:
            self.qty, self.avg_price = 0.0, 0.0
        else:
            if _sign(new) != _sign(self.qty):
                self.avg_price = price  # reversed through zero: the rest opened at this price
            self.qty = new
        return realised


@dataclass
class PendingOrder:
    """An approved order not yet settled: `remaining` signed base units still to fill."""

    instrument: Instrument
    remaining: float
    reduce_only: bool
    #: Monotonic seconds when approved; an order never settled expires (see `expire`).
    since: float = 0.0


@dataclass
class Portfolio:
    positions: dict[Instrument, Position] = field(default_factory=dict)
    marks: dict[Instrument, float] = field(default_factory=dict)
    pending: dict[str, PendingOrder] = field(default_factory=dict)
    realised: float = 0.0
    fees: float = 0.0
    peak_pnl: float = 0.0
    day: date | None = None
    day_start_pnl: float = 0.0
    _seen_fills: OrderedDict[str, None] = field(default_factory=OrderedDict)
    #: PnL is read several times per decision; recomputed only after a mark or a fill changed it.
    _pnl: float | None = None

    # --- updates -------------------------------------------------------------------------------
    def mark(self, instrument: Instrument, price: float, market_day: date | None = None) -> None:
        self.marks[instrument] = price
        self._pnl = None
        if market_day is not None:
            self.roll_day(market_day)
        self._track_peak()

    def roll_day(self, market_day: date) -> None:
        """A new UTC market day resets the daily-loss baseline."""
        if self.day is None or market_day > self.day:
            self.day = market_day
            self.day_start_pnl = self.pnl()

    def add_pending(
        self,
        client_order_id: str,
        instrument: Instrument,
        signed_qty: float,
        reduce_only: bool,
        since: float = 0.0,
    ) -> None:
        self.pending.setdefault(client_order_id, PendingOrder(instrument, signed_qty, reduce_only, since))

    def expire(self, now: float, ttl: float) -> list[str]:
        """Drop pending orders older than `ttl` seconds (execution never reported them)."""
        old = [coid for coid, p in self.pending.items() if now - p.since > ttl]
        for coid in old:
            del self.pending[coid]
        return old

    def settle(self, client_order_id: str) -> None:
        """The order is done (filled, cancelled or rejected): its unfilled rest is no exposure."""
        self.pending.pop(client_order_id, None)

    def apply_fill(
        self,
        fill_id: str,
        client_order_id: str,
        instrument: Instrument,
        signed_qty: float,
        price: float,
        fee: float,
        done: bool,
    ) -> bool:
        """Apply one fill event; False when that fill id was already applied."""
        if fill_id in self._seen_fills:
            return False
        self._seen_fills[fill_id] = None
        if len(self._seen_fills) > _SEEN_MAX:
            self._seen_fills.popitem(last=False)
        self._pnl = None
        pos = self.positions.setdefault(instrument, Position())
        self.realised += pos.apply(signed_qty, price)
        self.fees += fee
        if abs(pos.qty) < _EPS:
            del self.positions[instrument]
        self.marks.setdefault(instrument, price)
        pend = self.pending.get(client_order_id)
        if pend is not None:
            pend.remaining -= signed_qty
            if done or abs(pend.remaining) < _EPS or _sign(pend.remaining) != _sign(signed_qty):
                self.settle(client_order_id)
        self._track_peak()
        return True

    def _track_peak(self) -> None:
        self.peak_pnl = max(self.peak_pnl, self.pnl())

    # --- views ---------------------------------------------------------------------------------
    def mark_of(self, instrument: Instrument) -> float | None:
        return self.marks.get(instrument)

    def unrealised(self) -> float:
        total = 0.0
        for inst, pos in self.positions.items():
            mark = self.marks.get(inst, pos.avg_price)
            total += pos.qty * (mark - pos.avg_price)
        return total

    def pnl(self) -> float:
        """Realised + unrealised - fees, in quote currency. Positions change only through
        `apply_fill` and marks through `mark`, which invalidate the cached value."""
        if self._pnl is None:
            self._pnl = self.realised + self.unrealised() - self.fees
        return self._pnl

    def position_qty(self, instrument: Instrument) -> float:
        pos = self.positions.get(instrument)
        return pos.qty if pos else 0.0

    def pending_qty(self, instrument: Instrument, reduce_only: bool | None = None) -> float:
        """Signed quantity still pending on `instrument` (only exits, or only entries, if asked)."""
        return sum(
            p.remaining
            for p in self.pending.values()
            if p.instrument == instrument and (reduce_only is None or p.reduce_only == reduce_only)
        )

    def drawdown(self, share: float) -> float:
        """Fraction below the peak equity (share + peak PnL)."""
        peak_equity = share + self.peak_pnl
        return 0.0 if peak_equity <= 0 else max(0.0, (self.peak_pnl - self.pnl()) / peak_equity)

    def daily_loss(self, share: float) -> float:
        """Fraction lost since the start of the market day."""
        start_equity = share + self.day_start_pnl
        return 0.0 if start_equity <= 0 else max(0.0, (self.day_start_pnl - self.pnl()) / start_equity)
