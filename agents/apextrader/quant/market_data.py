"""Validation of OHLCV frames (docs/conventions.md §5) before any feature is computed.

Every problem raises `InvalidMarketData` with a one-line message that names the column, the row and
the timestamp, and a short `reason` word (used as the DLQ reason by the agents).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from apextrader.quant.jit import njit

if TYPE_CHECKING:  # polars (~35 MB RSS) is imported where a frame is built or read: docs/performance.md
    import polars as pl

FloatArray = npt.NDArray[np.float64]
OHLCV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")


class InvalidMarketData(ValueError):
    """Bad market data; `reason` is a short word (missing_column, nan, negative_price, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class OhlcvArrays:
    """Validated float64 columns (timestamps as epoch ms); `buy_volume` is NaN where unknown."""

    timestamp_ms: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    buy_volume: npt.NDArray[np.float64]


def timestamps_ms(frame: pl.DataFrame) -> npt.NDArray[np.int64]:
    """The `timestamp` column as epoch milliseconds (Datetime of any unit/zone, or integer ms)."""
    import polars as pl

    col = frame.get_column("timestamp")
    if col.dtype.is_temporal() and isinstance(col.dtype, pl.Datetime):
        col = col.dt.epoch("ms")
    elif not col.dtype.is_integer():
        raise InvalidMarketData(
            "invalid",
            f"column 'timestamp' has type {col.dtype}: use a datetime or integer epoch milliseconds",
        )
    _no_nulls(frame, col, "timestamp")
    return col.cast(pl.Int64).to_numpy()


def _no_nulls(frame: pl.DataFrame, col: pl.Series, name: str) -> None:
    if col.null_count():
        row = int(col.is_null().arg_true()[0])
        raise InvalidMarketData("nan", f"column '{name}' is null at row {row}{_at(frame, row)}")


def _at(frame: pl.DataFrame, row: int) -> str:
    if "timestamp" not in frame.columns:
        return ""
    return f" (timestamp {frame.get_column('timestamp')[row]})"


def _float_column(frame: pl.DataFrame, name: str) -> npt.NDArray[np.float64]:
    import polars as pl

    col = frame.get_column(name)
    if not col.dtype.is_numeric():
        raise InvalidMarketData("invalid", f"column '{name}' has type {col.dtype}: numbers expected")
    _no_nulls(frame, col, name)
    return col.cast(pl.Float64).to_numpy()


@njit(cache=True)
def _all_valid(ts: npt.NDArray[np.int64], o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray,
               v: FloatArray) -> bool:  # fmt: skip
    """One pass over the bars: True when every check below would pass (the common case).

    Branch-free (`&`, not `and`, no return per bar): memory-bound, twice as fast as the version
    that stopped at the first bad bar, and a bad frame is rare.
    """
    ok = True
    for i in range(c.shape[0]):
        oi, hi, li, ci, vi = o[i], h[i], lo[i], c[i], v[i]
        # NaN fails every comparison, so `x > 0` also catches NaN; inf is caught by x < inf.
        ok &= (oi > 0) & (oi < np.inf) & (hi > 0) & (hi < np.inf) & (li > 0) & (li < np.inf)
        ok &= (ci > 0) & (ci < np.inf) & (vi >= 0) & (vi < np.inf)
        ok &= (hi >= oi) & (hi >= ci) & (li <= oi) & (li <= ci)
    for i in range(1, ts.shape[0]):
        ok &= ts[i] > ts[i - 1]
    return ok


def _first(mask: npt.NDArray[np.bool_]) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def validate_ohlcv(frame: pl.DataFrame) -> OhlcvArrays:
    """Check columns, types, finiteness, positivity, bar consistency and strictly rising timestamps."""
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidMarketData(
            "missing_column",
            f"missing column(s) {', '.join(missing)}: need {', '.join(OHLCV_COLUMNS)}",
        )
    ts = timestamps_ms(frame)
    cols = {name: _float_column(frame, name) for name in (*PRICE_COLUMNS, "volume")}
    o, h, lo, c = (cols[n] for n in PRICE_COLUMNS)
    if not _all_valid(ts, o, h, lo, c, cols["volume"]):
        _explain(frame, ts, cols)
    return OhlcvArrays(ts, o, h, lo, c, cols["volume"], _buy_volume(frame, cols["volume"]))


def _explain(frame: pl.DataFrame, ts: npt.NDArray[np.int64], cols: dict[str, FloatArray]) -> None:
    """The checks one by one, raising for the first that fails (only run when one does)."""
    for name, values in cols.items():
        at = _first(~np.isfinite(values))
        if at is not None:
            raise InvalidMarketData("nan", f"column '{name}' is {values[at]} at row {at}{_at(frame, at)}")
    for name in PRICE_COLUMNS:
        row = _first(cols[name] <= 0)
        if row is not None:
            raise InvalidMarketData(
                "negative_price",
                f"column '{name}' is {cols[name][row]} at row {row}{_at(frame, row)}: prices must be > 0",
            )
    row = _first(cols["volume"] < 0)
    if row is not None:
        raise InvalidMarketData(
            "negative_volume", f"column 'volume' is negative at row {row}{_at(frame, row)}"
        )
    o, h, lo, c = (cols[n] for n in PRICE_COLUMNS)
    row = _first((h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (lo > h))
    if row is not None:
        raise InvalidMarketData(
            "inconsistent_bar",
            f"bar at row {row}{_at(frame, row)} violates low <= open, close <= high",
        )
    if ts.size > 1:
        steps = np.diff(ts)
        row = _first(steps <= 0)
        if row is not None:
            kind, word = (
                ("duplicate_timestamp", "duplicate")
                if steps[row] == 0
                else (
                    "non_monotonic",
                    "decreasing",
                )
            )
            raise InvalidMarketData(
                kind, f"{word} timestamp at row {row + 1}{_at(frame, row + 1)}: timestamps must rise"
            )


def _buy_volume(frame: pl.DataFrame, volume: FloatArray) -> FloatArray:
    import polars as pl

    buy: FloatArray = np.full(volume.size, np.nan)
    if "buy_volume" in frame.columns:
        col = frame.get_column("buy_volume")
        if not col.dtype.is_numeric() and col.dtype != pl.Null:
            raise InvalidMarketData("invalid", f"column 'buy_volume' has type {col.dtype}")
        buy = col.cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)
        known = ~np.isnan(buy)
        row = _first(known & ((buy < 0) | (buy > volume * (1 + 1e-9)) | ~np.isfinite(buy)))
        if row is not None:
            raise InvalidMarketData(
                "invalid", f"'buy_volume' at row {row}{_at(frame, row)} is outside 0..volume"
            )
    return buy
