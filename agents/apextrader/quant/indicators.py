"""ATR(14), RSI(14), MACD(12, 26, 9), EMA 20/50/200 and CVD, batch and streaming, equal to TA-Lib.

Public API
----------
- `compute_features(frame)`: a polars frame with `timestamp, open, high, low, close, volume`
  (+ optional `buy_volume`) gets the columns `FEATURE_COLUMNS` (null during warm-up).
- `StreamingFeatures`: per (exchange, symbol) state, updated one closed bar at a time; its output
  equals `compute_features` on the same bars bit for bit (same numba step function, tested).

Warm-up (TA-Lib's default compatibility mode, unstable periods 0), bar index i from 0:
- `ema20/50/200`: null before i = n-1; at n-1 the simple mean of the first n closes; then
  `ema = (close - ema) * k + ema` with k = 2 / (n + 1).
- `atr14`: true range from bar 1 (it needs the previous close); at i = 14 the mean of TR[1..14],
  then Wilder: `atr = (atr * 13 + tr) / 14`. Null for i < 14.
- `rsi14`: Wilder's average gain/loss over the first 14 changes (bars 1..14), first value at i = 14,
  then `avg = (avg * 13 + x) / 14`; `rsi = 100 * gain / (gain + loss)`, 0 when that sum is within
  TA-Lib's 1e-14 of zero (a flat market). Null for i < 14.
- `macd, macd_signal, macd_hist`: TA-Lib's MACD: the slow EMA(26) is seeded at bar 25 as usual, but
  the fast EMA(12) is seeded at bar 25 too, with the mean of closes 14..25 (not at bar 11); the
  signal EMA(9) of the MACD line is seeded with the mean of the line at bars 25..33. All three are
  null before bar 33 (TA-Lib's lookback), `macd_hist = macd - macd_signal`.
- `cvd`: cumulative volume delta from the first bar of the input (never null). Where a bar has
  `buy_volume` (taker buys): `buy_volume - (volume - buy_volume)`. Otherwise the documented candle
  approximation, the close-location value: `volume * ((close - low) - (high - close)) / (high - low)`
  (0 for a bar with high == low), which is exactly TA-Lib's Chaikin A/D line (`talib.AD`).

Wilder's smoothing (ATR, RSI) is computed as `avg * (13/14) + x * (1/14)`: a division in the
loop-carried chain costs ~14 cycles a bar, these multiplications 3; the values differ from TA-Lib's
by an ulp or two (tested to 1e-9 absolute, measured ~1e-12 on BTC-sized prices).

Indicators depend only on bars at or before t (no look-ahead; tested by truncation). The polars
frame is validated first (`InvalidMarketData` names the column, row and problem).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from apextrader.contracts.payloads import Bar, Features
from apextrader.quant import _feature_kernel as kernel
from apextrader.quant.market_data import InvalidMarketData, validate_ohlcv

if TYPE_CHECKING:  # polars (~35 MB RSS) is imported where a frame is built or read: docs/performance.md
    import polars as pl

FEATURE_COLUMNS: Final = (
    "atr14",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "ema20",
    "ema50",
    "ema200",
    "cvd",
)
#: Bars before every feature has a value (EMA 200 is the longest warm-up).
WARMUP_BARS: Final = 199

__all__ = [
    "FEATURE_COLUMNS",
    "WARMUP_BARS",
    "FeatureRow",
    "InvalidMarketData",
    "StreamingFeatures",
    "compute_features",
]


def compute_features(frame: pl.DataFrame) -> pl.DataFrame:
    """Return `frame` with the `FEATURE_COLUMNS` added (Float64, null during warm-up)."""
    import polars as pl

    data = validate_ohlcv(frame)
    state = kernel.new_state()
    # One array per column, adopted by polars without a copy (a (9, n) block is over glibc's 32 MB
    # mmap ceiling: fresh pages to fault in on every call, measurably slower).
    out = tuple(np.empty(data.close.size, dtype=np.float64) for _ in FEATURE_COLUMNS)
    bv = data.buy_volume if "buy_volume" in frame.columns else np.empty(0)
    kernel.run(state, data.high, data.low, data.close, data.volume, bv, out)
    if np.isfinite(state).all():
        # Inputs are finite and a non-finite value never leaves the state again (inf persists,
        # inf - inf is NaN), so a finite final state means NaN exactly during warm-up.
        columns = [_warmup_nulls(name, values, first) for name, values, first in
                   zip(FEATURE_COLUMNS, out, kernel.FIRST_VALUE, strict=True)]  # fmt: skip
    else:  # overflow somewhere (prices near 1e308): find the NaNs the slow way
        columns = [pl.Series(name, values, nan_to_null=True)
                   for name, values in zip(FEATURE_COLUMNS, out, strict=True)]  # fmt: skip
    return frame.drop([c for c in FEATURE_COLUMNS if c in frame.columns]).with_columns(columns)


def _warmup_nulls(name: str, values: npt.NDArray[np.float64], first: int) -> pl.Series:
    """`values` as a Series, null before `first`, without copying: Arrow's validity bitmap (LSB
    first) over the numpy buffer, which polars adopts as is."""
    import polars as pl

    n = values.size
    first = min(first, n)
    valid = np.full((n + 7) // 8, 0xFF, dtype=np.uint8)
    valid[: first // 8] = 0
    if first < n:
        valid[first // 8] = (0xFF << (first % 8)) & 0xFF
    import pyarrow as pa  # batch only: ~27 MB a streaming agent need not carry

    buffers = [pa.py_buffer(valid), pa.py_buffer(values)]
    return pl.Series(name, pa.Array.from_buffers(pa.float64(), n, buffers, null_count=first))


@dataclass(frozen=True)
class FeatureRow:
    """The features at one bar; None during an indicator's warm-up."""

    timestamp_ms: int
    values: tuple[float | None, ...]

    def as_dict(self) -> dict[str, float | None]:
        return dict(zip(FEATURE_COLUMNS, self.values, strict=True))

    def to_features(self) -> Features:
        return Features(**self.as_dict())  # type: ignore[arg-type]


def _row(ts: int, out: np.ndarray) -> FeatureRow:  # type: ignore[type-arg]
    return FeatureRow(ts, tuple(None if x != x else float(x) for x in out.tolist()))


def bar_time_ms(value: datetime | int) -> int:
    return value if isinstance(value, int) else int(value.timestamp() * 1000)


class StreamingFeatures:
    """Incremental features for one (exchange, symbol): O(1) state, O(1) work per bar.

    `update` is idempotent by bar time: the last bar again returns its row unchanged, an older bar
    returns None; neither touches the state. `peek` computes an unclosed bar without keeping it.
    """

    __slots__ = ("_out", "_state", "last_row", "last_time_ms")

    def __init__(self) -> None:
        self._state = kernel.new_state()
        self._out = np.empty(kernel.N_OUTPUTS, dtype=np.float64)
        self.last_time_ms: int | None = None
        self.last_row: FeatureRow | None = None

    @property
    def bars(self) -> int:
        return int(self._state[0])

    def update(self, bar: Bar) -> FeatureRow | None:
        ts = bar_time_ms(bar.open_time)
        if self.last_time_ms is not None and ts <= self.last_time_ms:
            return self.last_row if ts == self.last_time_ms else None
        self._check(bar)
        kernel.step_one(self._state, *_args(bar), self._out)
        self.last_time_ms = ts
        self.last_row = _row(ts, self._out)
        return self.last_row

    def update_values(self, ts: int, h: float, lo: float, c: float, v: float, bv: float = np.nan) -> None:
        """The raw fast path (benchmarks, bulk rebuilds): inputs must already be valid."""
        kernel.step_one(self._state, h, lo, c, v, bv, self._out)
        self.last_time_ms = ts

    def peek(self, bar: Bar) -> FeatureRow | None:
        """Features as if `bar` closed now (intrabar); the state is left untouched. None for a bar
        not newer than the last closed one."""
        if self.last_time_ms is not None and bar_time_ms(bar.open_time) <= self.last_time_ms:
            return None
        self._check(bar)
        out = np.empty(kernel.N_OUTPUTS, dtype=np.float64)
        kernel.step_one(self._state.copy(), *_args(bar), out)
        return _row(bar_time_ms(bar.open_time), out)

    def _check(self, bar: Bar) -> None:
        # Bar (pydantic) already refuses NaN, non-positive prices and inconsistent highs/lows.
        if bar.buy_volume is not None and bar.buy_volume > bar.volume * (1 + 1e-9):
            raise InvalidMarketData("invalid", "buy_volume exceeds volume")


def _args(bar: Bar) -> tuple[float, float, float, float, float]:
    bv = np.nan if bar.buy_volume is None else bar.buy_volume
    return (bar.high, bar.low, bar.close, bar.volume, bv)
