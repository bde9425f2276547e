"""Per-bar signal rules, compiled with numba. Each `*_at(..., t, ...)` reads only bars <= t and is
called by both paths: over every bar of a frame (backtests) and on the last bar of a rolling window
(the live agent), so the two produce identical signals (same float operations in the same order).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from apextrader.quant.jit import njit

F64 = npt.NDArray[np.float64]


@njit(cache=True, nogil=True)
def _window_mean(x: F64, start: int, stop: int) -> float:
    total = 0.0
    for i in range(start, stop):
        total += x[i]
    return total / (stop - start)


@njit(cache=True, nogil=True)
def _window_std(x: F64, start: int, stop: int, mean: float) -> float:
    acc = 0.0
    for i in range(start, stop):
        d = x[i] - mean
        acc += d * d
    return math.sqrt(acc / (stop - start))  # population std, as Bollinger's definition


@njit(cache=True, nogil=True)
def _breakout_decide(
    close: F64,
    volume: F64,
    cvd: F64,
    atr: F64,
    t: int,
    upper: float,
    lower: float,
    volume_lookback: int,
    volume_factor: float,
    cvd_confirm: bool,
) -> tuple[int, float]:
    """The breakout decision at t given the prior channel (`upper`, `lower`): shared by both paths."""
    if volume[t] <= volume_factor * _window_mean(volume, t - volume_lookback, t):
        return 0, 0.0
    c = close[t]
    if c > upper and (not cvd_confirm or cvd[t] > cvd[t - 1]):
        return 1, min(1.0, 0.5 + 0.5 * min(1.0, (c - upper) / atr[t]))
    if c < lower and (not cvd_confirm or cvd[t] < cvd[t - 1]):
        return -1, min(1.0, 0.5 + 0.5 * min(1.0, (lower - c) / atr[t]))
    return 0, 0.0


@njit(cache=True, nogil=True)
def _breakout_ready(cvd: F64, atr: F64, t: int, need: int, cvd_confirm: bool) -> bool:
    return not (
        t < need or not (atr[t] > 0.0) or cvd[t] != cvd[t] or (cvd_confirm and cvd[t - 1] != cvd[t - 1])
    )


@njit(cache=True, nogil=True)
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
    if not _breakout_ready(cvd, atr, t, max(lookback, volume_lookback), cvd_confirm):
        return 0, 0.0
    upper = -np.inf
    lower = np.inf
    for i in range(t - lookback, t):
        upper = max(upper, high[i])
        lower = min(lower, low[i])
    return _breakout_decide(
        close, volume, cvd, atr, t, upper, lower, volume_lookback, volume_factor, cvd_confirm
    )


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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
    """`breakout_at` for every bar in O(bars): the channel comes from monotonic queues (max and min
    are exact, so the values equal the window scans bit for bit); the decision is the same code."""
    n = close.shape[0]
    side = np.zeros(n, dtype=np.int8)
    strength = np.zeros(n)
    need = max(lookback, volume_lookback)
    qmax = np.empty(n, dtype=np.int64)
    qmin = np.empty(n, dtype=np.int64)
    hmax = tmax = hmin = tmin = 0
    for t in range(n):
        if t >= 1:  # the channel at t covers bars t - lookback .. t - 1
            i = t - 1
            while tmax > hmax and high[qmax[tmax - 1]] <= high[i]:
                tmax -= 1
            qmax[tmax] = i
            tmax += 1
            while tmin > hmin and low[qmin[tmin - 1]] >= low[i]:
                tmin -= 1
            qmin[tmin] = i
            tmin += 1
        while tmax > hmax and qmax[hmax] < t - lookback:
            hmax += 1
        while tmin > hmin and qmin[hmin] < t - lookback:
            hmin += 1
        if not _breakout_ready(cvd, atr, t, need, cvd_confirm):
            continue
        s, k = _breakout_decide(
            close,
            volume,
            cvd,
            atr,
            t,
            high[qmax[hmax]],
            low[qmin[hmin]],
            volume_lookback,
            volume_factor,
            cvd_confirm,
        )
        side[t] = s
        strength[t] = k
    return side, strength


@njit(cache=True, nogil=True)
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
