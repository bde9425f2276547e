"""Per-instrument market statistics the watcher's rules read: liquidation notional per bar (24 h and
short-window sums), true range and absolute log returns (volatility), funding, the latest price."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from apextrader.contracts.payloads import MarketSnapshot
from apextrader.watcher.stats import RollingStats

#: Bars of history for the volatility baselines.
VOL_WINDOW = 240


@dataclass
class LiquidationState:
    """Liquidated notional per closed bar; liquidation events are de-duplicated by content so a
    scanner that repeats a bar's events in every intrabar snapshot is not counted twice."""

    day_bars: int
    window_bars: int
    per_bar: RollingStats = field(init=False)
    window_sums: RollingStats = field(init=False)
    recent: deque[float] = field(init=False)
    _seen: set[tuple[object, ...]] = field(default_factory=set)
    _seen_order: deque[tuple[object, ...]] = field(default_factory=lambda: deque(maxlen=10_000))
    _bar_open: datetime | None = None
    _bar_notional: float = 0.0

    def __post_init__(self) -> None:
        self.per_bar = RollingStats(self.day_bars)
        self.window_sums = RollingStats(self.day_bars)
        self.recent = deque(maxlen=self.window_bars)

    def add(self, snap: MarketSnapshot) -> None:
        if self._bar_open != snap.bar.open_time:
            self._bar_open, self._bar_notional = snap.bar.open_time, 0.0
        for liq in snap.liquidations:
            key = (liq.time, liq.side, liq.price, liq.amount)
            if key in self._seen:
                continue
            if len(self._seen_order) == self._seen_order.maxlen:
                self._seen.discard(self._seen_order[0])
            self._seen_order.append(key)
            self._seen.add(key)
            self._bar_notional += liq.price * liq.amount

    def close_bar(self) -> tuple[float | None, float | None, float]:
        """On a closed bar: (z vs the 24 h per-bar distribution, z of the short-window sum vs 24 h of
        window sums, the window sum); then the bar joins the history."""
        x = self._bar_notional
        self.recent.append(x)
        wsum = sum(self.recent)
        z24, zwin = self.per_bar.z(x), self.window_sums.z(wsum)
        self.per_bar.push(x)
        self.window_sums.push(wsum)
        self._bar_open, self._bar_notional = None, 0.0
        return z24, zwin, wsum


@dataclass
class VolatilityState:
    """True range against its recent distribution (an ATR jump) and the absolute log return against
    its own (a realised-volatility jump)."""

    tr: RollingStats = field(default_factory=lambda: RollingStats(VOL_WINDOW))
    ret: RollingStats = field(default_factory=lambda: RollingStats(VOL_WINDOW))
    prev_close: float | None = None
    atr: float | None = None

    def close_bar(self, high: float, low: float, close: float) -> tuple[float | None, float | None]:
        if self.prev_close is None:
            self.prev_close = close
            return None, None
        tr = max(high - low, abs(high - self.prev_close), abs(low - self.prev_close))
        r = abs(math.log(close / self.prev_close))
        z_tr, z_ret = self.tr.z(tr), self.ret.z(r)
        self.tr.push(tr)
        self.ret.push(r)
        self.atr = tr if self.atr is None else (self.atr * 13 + tr) / 14  # Wilder's ATR14
        self.prev_close = close
        return z_tr, z_ret


@dataclass
class InstrumentState:
    liquidations: LiquidationState
    volatility: VolatilityState = field(default_factory=VolatilityState)
    price: float | None = None
    price_seen: datetime | None = None
    #: Open time of the bar `price` belongs to.
    price_bar: datetime | None = None
