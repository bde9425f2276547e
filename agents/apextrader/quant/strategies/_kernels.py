"""Per-bar signal rules, compiled with numba. Each `*_at(..., t, ...)` reads only bars <= t and is
called by both paths: over every bar of a frame (backtests) and on the last bar of a rolling window
(the live agent), so the two produce identical signals (same float operations in the same order).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@numba.njit(cache=True, nogil=True)
def _window_mean(x: F64, start: int, stop: int) -> float:
    total = 0.0
    for i in range(start, stop):
        total += x[i]
    return total / (stop - start)


@numba.njit(cache=True, nogil=True)
def _window_std(x: F64, start: int, stop: int, mean: float) -> float:
    acc = 0.0
    for i in range(start, stop):
        d = x[i] - mean
        acc += d * d
    return math.sqrt(acc / (stop - start))  # population std, as Bollinger's definition


@numba.njit(cache=True, nogil=True)
def breakout_at(
    high: F64,
    low: F64,
    close: F64,
    volume: F64,
    cvd: F64,
    atr: F64,
    t: int,
    lookback: int,
    volume_lookback: int,
    volume_factor: float,
    cvd_confirm: bool,
) -> tuple[int, float]:
    """(side, strength) at bar t: the close breaks the prior `lookback` bars' high (low) with volume
    above `volume_factor` x its prior mean (and CVD rising/falling when asked)."""
    need = max(lookback, volume_lookback)
    if t < need or not (atr[t] > 0.0) or cvd[t] != cvd[t] or (cvd_confirm and cvd[t - 1] != cvd[t - 1]):
        return 0, 0.0
    upper = -np.inf
    lower = np.inf
    for i in range(t - lookback, t):
        upper = max(upper, high[i])
        lower = min(lower, low[i])
    if volume[t] <= volume_factor * _window_mean(volume, t - volume_lookback, t):
        return 0, 0.0
    c = close[t]
    if c > upper and (not cvd_confirm or cvd[t] > cvd[t - 1]):
        return 1, min(1.0, 0.5 + 0.5 * min(1.0, (c - upper) / atr[t]))
    if c < lower and (not cvd_confirm or cvd[t] < cvd[t - 1]):
        return -1, min(1.0, 0.5 + 0.5 * min(1.0, (lower - c) / atr[t]))
    return 0, 0.0


@numba.njit(cache=True, nogil=True)
def mean_reversion_at(
    close: F64,
    rsi: F64,
    ema200: F64,
    atr: F64,
    t: int,
    bb_period: int,
    bb_std: float,
    rsi_low: float,
    rsi_high: float,
    trend_filter: bool,
) -> tuple[int, float]:
    """(side, strength) at bar t: the close outside its Bollinger band with RSI at an extreme,
    long only above EMA 200 and short only below it when the trend filter is on."""
    if t + 1 < bb_period or not (atr[t] > 0.0) or rsi[t] != rsi[t]:
        return 0, 0.0
    if trend_filter and ema200[t] != ema200[t]:
        return 0, 0.0
    mean = _window_mean(close, t + 1 - bb_period, t + 1)
    std = _window_std(close, t + 1 - bb_period, t + 1, mean)
    if std <= 0.0:
        return 0, 0.0
    c = close[t]
    z = (c - mean) / std
    strength = min(1.0, abs(z) / (2.0 * bb_std))
    if z < -bb_std and rsi[t] < rsi_low and (not trend_filter or c > ema200[t]):
        return 1, strength
    if z > bb_std and rsi[t] > rsi_high and (not trend_filter or c < ema200[t]):
        return -1, strength
    return 0, 0.0


@numba.njit(cache=True, nogil=True)
def breakout_all(
    high: F64,
    low: F64,
    close: F64,
    volume: F64,
    cvd: F64,
    atr: F64,
    lookback: int,
    volume_lookback: int,
    volume_factor: float,
    cvd_confirm: bool,
) -> tuple[npt.NDArray[np.int8], F64]:
    n = close.shape[0]
    side = np.zeros(n, dtype=np.int8)
    strength = np.zeros(n)
    for t in range(n):
        s, k = breakout_at(
            high, low, close, volume, cvd, atr, t, lookback, volume_lookback, volume_factor, cvd_confirm
        )
        side[t] = s
        strength[t] = k
    return side, strength


@numba.njit(cache=True, nogil=True)
def mean_reversion_all(
    close: F64,
    rsi: F64,
    ema200: F64,
    atr: F64,
    bb_period: int,
    bb_std: float,
    rsi_low: float,
    rsi_high: float,
    trend_filter: bool,
) -> tuple[npt.NDArray[np.int8], F64]:
    n = close.shape[0]
    side = np.zeros(n, dtype=np.int8)
    strength = np.zeros(n)
    for t in range(n):
        s, k = mean_reversion_at(
            close, rsi, ema200, atr, t, bb_period, bb_std, rsi_low, rsi_high, trend_filter
        )
        side[t] = s
        strength[t] = k
    return side, strength
