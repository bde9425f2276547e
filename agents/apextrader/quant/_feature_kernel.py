"""The one arithmetic behind every feature: a numba step function over a flat state vector.

`compute_features` (batch) runs `_run` over a whole frame; `StreamingFeatures` calls `step_one` per
bar. Both inline the same `_step`, so streaming equals batch bit for bit by construction (and the
tests check it). The operations and their order copy TA-Lib's C code (see `indicators`'s docstring),
so the values also equal TA-Lib's to the last few ulps. No fast-math: LLVM may not reassociate.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from apextrader.quant.jit import njit

FloatArray = npt.NDArray[np.float64]

ATR_N = 14
RSI_N = 14
EMA_NS = (20, 50, 200)
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
#: TA-Lib's RSI treats |avg gain + avg loss| below this as zero (TA_EPSILON in ta_utility.h).
TA_EPSILON = 1e-14

# State slots (one float64 vector per exchange/symbol).
_N, _PREV_CLOSE, _TR_SUM, _ATR, _GAIN, _LOSS = 0, 1, 2, 3, 4, 5
_EMA20, _EMA50, _EMA200, _SLOW, _FAST, _SIGNAL, _CVD = 6, 7, 8, 9, 10, 11, 12
#: Closes at bars 14..25: TA-Lib seeds MACD's fast EMA with their mean (see `indicators`).
_FAST_SEED = 13
STATE_SIZE = _FAST_SEED + MACD_FAST
N_OUTPUTS = 9
_MACD_START = MACD_SLOW - 1  # first bar with both EMAs of the MACD line
_FAST_SEED_START = _MACD_START - MACD_FAST + 1
_SIGNAL_START = _MACD_START + MACD_SIGNAL - 1  # TA-Lib's MACD lookback (33)


def new_state() -> FloatArray:
    return np.zeros(STATE_SIZE, dtype=np.float64)


@njit(inline="always", cache=True)
def _ema_seeded(state: FloatArray, slot: int, i: int, n: int, x: float) -> float:
    """TA-Lib EMA: mean of the first n inputs at bar n-1, then (x - prev) * k + prev; NaN before."""
    if i < n - 1:
        state[slot] += x
        return np.nan
    if i == n - 1:
        value: float = (state[slot] + x) / n
    else:
        k = 2.0 / (n + 1)
        value = ((x - state[slot]) * k) + state[slot]
    state[slot] = value
    return value


@njit(inline="always", cache=True)
def _step(
    state: FloatArray,
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float,
    bv: float,
    out: FloatArray,
) -> None:
    i = int(state[_N])
    for j in range(N_OUTPUTS):
        out[j] = np.nan
    pc = state[_PREV_CLOSE]
    if i > 0:
        # ATR(14): TRANGE from bar 1, mean of the first 14 at bar 14, then Wilder smoothing.
        tr = h - lo
        d_hi = abs(pc - h)
        if d_hi > tr:
            tr = d_hi
        d_lo = abs(pc - lo)
        if d_lo > tr:
            tr = d_lo
        if i < ATR_N:
            state[_TR_SUM] += tr
        elif i == ATR_N:
            state[_ATR] = (state[_TR_SUM] + tr) / ATR_N
            out[0] = state[_ATR]
        else:
            state[_ATR] = (state[_ATR] * (ATR_N - 1) + tr) / ATR_N
            out[0] = state[_ATR]
        # RSI(14): Wilder's average gain/loss, 100 * gain / (gain + loss) as TA-Lib writes it.
        diff = c - pc
        if i > RSI_N:
            state[_LOSS] *= RSI_N - 1
            state[_GAIN] *= RSI_N - 1
        if diff < 0:
            state[_LOSS] -= diff
        else:
            state[_GAIN] += diff
        if i >= RSI_N:
            state[_LOSS] /= RSI_N
            state[_GAIN] /= RSI_N
            total = state[_GAIN] + state[_LOSS]
            if -TA_EPSILON < total < TA_EPSILON:
                out[1] = 0.0
            else:
                out[1] = 100.0 * (state[_GAIN] / total)
    out[5] = _ema_seeded(state, _EMA20, i, EMA_NS[0], c)
    out[6] = _ema_seeded(state, _EMA50, i, EMA_NS[1], c)
    out[7] = _ema_seeded(state, _EMA200, i, EMA_NS[2], c)
    # MACD(12, 26, 9), TA-Lib's way: both EMAs start at bar 25 (the fast one seeded from bars 14..25),
    # the signal EMA is seeded from the MACD line at bars 25..33, all three are output from bar 33.
    slow = _ema_seeded(state, _SLOW, i, MACD_SLOW, c)
    if _FAST_SEED_START <= i < _MACD_START:
        state[_FAST_SEED + i - _FAST_SEED_START] = c
    elif i == _MACD_START:
        total = 0.0
        for j in range(MACD_FAST - 1):
            total += state[_FAST_SEED + j]
        state[_FAST] = (total + c) / MACD_FAST
    elif i > _MACD_START:
        state[_FAST] = ((c - state[_FAST]) * (2.0 / (MACD_FAST + 1))) + state[_FAST]
    if i >= _MACD_START:
        line = state[_FAST] - slow
        signal = _ema_seeded(state, _SIGNAL, i - _MACD_START, MACD_SIGNAL, line)
        if i >= _SIGNAL_START:
            out[2] = line
            out[3] = signal
            out[4] = line - signal
    # CVD: taker buy minus taker sell volume when known, else the close-location estimate
    # (TA-Lib's AD line: volume * ((c - l) - (h - c)) / (h - l), 0 for a flat bar).
    if bv == bv:  # not NaN: the bar reports taker-buy volume
        delta = bv - (v - bv)
    else:
        rng = h - lo
        delta = (((c - lo) - (h - c)) / rng) * v if rng > 0.0 else 0.0
    state[_CVD] += delta
    out[8] = state[_CVD]
    state[_PREV_CLOSE] = c
    state[_N] = i + 1


@njit(cache=True)
def run(
    state: FloatArray,
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    c: FloatArray,
    v: FloatArray,
    bv: FloatArray,
) -> FloatArray:
    """Every bar in order; returns an (N_OUTPUTS, n) array (NaN = warm-up) and updates `state`.

    The state is worked on in a fresh local copy: LLVM then knows it aliases no input or output
    and keeps it out of memory, several times faster than updating `state` in place, with the
    very same arithmetic. Rows of the result are the output columns (contiguous for polars).
    """
    n = c.shape[0]
    result = np.empty((N_OUTPUTS, n), dtype=np.float64)
    row = np.empty(N_OUTPUTS, dtype=np.float64)
    local = state.copy()
    for t in range(n):
        _step(local, o[t], h[t], lo[t], c[t], v[t], bv[t], row)
        for j in range(N_OUTPUTS):
            result[j, t] = row[j]
    state[:] = local
    return result


@njit(cache=True)
def step_one(
    state: FloatArray, o: float, h: float, lo: float, c: float, v: float, bv: float, out: FloatArray
) -> None:
    """One bar (the streaming path)."""
    _step(state, o, h, lo, c, v, bv, out)
