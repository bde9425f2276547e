"""The one arithmetic behind every feature: a numba step function over the indicator state.

`_step` takes the state as a tuple of floats and returns the new state and the bar's outputs, so
it touches no memory. `run` (batch) carries that tuple through a loop over the whole frame inside
one compiled call, where LLVM keeps it in registers; `step_one` (streaming) loads it from and
stores it to a per-symbol float64 vector around the very same inlined `_step`. Same operations in
the same order, no fast-math (LLVM may not reassociate or contract), so streaming equals batch bit
for bit (tested). The operations and their order copy TA-Lib's C code (see `indicators`'s
docstring), so the values also equal TA-Lib's to the last few ulps.
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
#: Wilder smoothing (ATR and RSI, both period 14): avg * 13/14 + x * 1/14. TA-Lib writes
#: (avg * 13 + x) / 14; a division in the loop-carried chain costs ~14 cycles a bar where these
#: multiplications cost 3, for a difference of an ulp or two (<= 1e-12 of the value, tested).
_WILDER_KEEP = (ATR_N - 1) / ATR_N
_WILDER_NEW = 1.0 / ATR_N
#: TA-Lib's RSI treats |avg gain + avg loss| below this as zero (TA_EPSILON in ta_utility.h).
TA_EPSILON = 1e-14

# State slots (one float64 vector per exchange/symbol; the tuple `_step` works on, in this order).
_N, _PREV_CLOSE, _TR_SUM, _ATR, _GAIN, _LOSS = 0, 1, 2, 3, 4, 5
_EMA20, _EMA50, _EMA200, _SLOW, _FAST, _SIGNAL, _CVD = 6, 7, 8, 9, 10, 11, 12
STATE_SIZE = 13
N_OUTPUTS = 9
_MACD_START = MACD_SLOW - 1  # first bar with both EMAs of the MACD line
#: TA-Lib seeds MACD's fast EMA at bar 25 with the mean of closes 14..25: an EMA(12) started at 14.
_FAST_SEED_START = _MACD_START - MACD_FAST + 1
_SIGNAL_START = _MACD_START + MACD_SIGNAL - 1  # TA-Lib's MACD lookback (33)
#: Per output, the first bar (from a fresh state) with a value; before it the output is NaN.
WARMED_UP = 200  # bars after which no warm-up branch of `_step` is taken (EMA 200 is the last)
FIRST_VALUE = (ATR_N, RSI_N, _SIGNAL_START, _SIGNAL_START, _SIGNAL_START, *(n - 1 for n in EMA_NS), 0)


def new_state() -> FloatArray:
    return np.zeros(STATE_SIZE, dtype=np.float64)


@njit(inline="always", cache=True)
def _ema_seeded(acc: float, i: int, n: int, x: float, warm: bool) -> tuple[float, float]:
    """TA-Lib EMA at its i-th input: (new accumulator, output). The accumulator sums the first
    n-1 inputs, holds their mean with x at i = n-1 (the first output), then the EMA
    (x - prev) * k + prev; the output is NaN before i = n-1. `warm=False`: i is past n-1."""
    if warm and i < n - 1:
        return acc + x, np.nan
    if warm and i == n - 1:
        value: float = (acc + x) / n
    else:
        value = ((x - acc) * (2.0 / (n + 1))) + acc
    return value, value


@njit(inline="always", cache=True)
def _step(
    s: tuple[float, ...], h: float, lo: float, c: float, v: float, bv: float, warm: bool
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """One bar: (new state, outputs in `FEATURE_COLUMNS` order, NaN during warm-up).

    `warm=False` promises the bar is past every warm-up (`i >= WARMED_UP`): callers pass it as a
    constant, so LLVM drops the warm-up branches from the steady-state loop. Either way the same
    arithmetic runs on the same values."""
    n_bars, pc, tr_sum, atr, gain, loss, e20, e50, e200, slow, fast, signal, cvd = s
    i = int(n_bars)
    atr_out = rsi_out = macd_out = signal_out = hist_out = np.nan
    if not warm or i > 0:
        # ATR(14): TRANGE from bar 1, mean of the first 14 at bar 14, then Wilder smoothing.
        tr = h - lo
        d_hi = abs(pc - h)
        if d_hi > tr:
            tr = d_hi
        d_lo = abs(pc - lo)
        if d_lo > tr:
            tr = d_lo
        if warm and i < ATR_N:
            tr_sum += tr
        elif warm and i == ATR_N:
            atr = (tr_sum + tr) / ATR_N
            atr_out = atr
        else:
            atr = atr * _WILDER_KEEP + tr * _WILDER_NEW
            atr_out = atr
        # RSI(14): Wilder's average gain/loss, 100 * gain / (gain + loss) as TA-Lib writes it.
        diff = c - pc
        # max(), not if/else: the sign of a change is a coin flip the CPU cannot predict, and
        # LLVM turns the if/else into a branch (maxsd here). Same values: x + 0.0 == x for x >= 0.
        down = max(-diff, 0.0)
        up = max(diff, 0.0)
        if not warm or i > RSI_N:
            loss = loss * _WILDER_KEEP + down * _WILDER_NEW
            gain = gain * _WILDER_KEEP + up * _WILDER_NEW
        else:
            loss += down
            gain += up
            if i == RSI_N:
                loss /= RSI_N
                gain /= RSI_N
        if not warm or i >= RSI_N:
            total = gain + loss
            rsi_out = 0.0 if -TA_EPSILON < total < TA_EPSILON else 100.0 * (gain / total)
    e20, e20_out = _ema_seeded(e20, i, EMA_NS[0], c, warm)
    e50, e50_out = _ema_seeded(e50, i, EMA_NS[1], c, warm)
    e200, e200_out = _ema_seeded(e200, i, EMA_NS[2], c, warm)
    # MACD(12, 26, 9), TA-Lib's way: both EMAs start at bar 25 (the fast one seeded from bars 14..25),
    # the signal EMA is seeded from the MACD line at bars 25..33, all three are output from bar 33.
    slow, slow_out = _ema_seeded(slow, i, MACD_SLOW, c, warm)
    if not warm or i >= _FAST_SEED_START:
        fast, fast_out = _ema_seeded(fast, i - _FAST_SEED_START, MACD_FAST, c, warm)
        if not warm or i >= _MACD_START:
            line = fast_out - slow_out
            signal, sig = _ema_seeded(signal, i - _MACD_START, MACD_SIGNAL, line, warm)
            if not warm or i >= _SIGNAL_START:
                macd_out, signal_out, hist_out = line, sig, line - sig
    # CVD: taker buy minus taker sell volume when known, else the close-location estimate
    # (TA-Lib's AD line: volume * ((c - l) - (h - c)) / (h - l), 0 for a flat bar).
    if bv == bv:  # not NaN: the bar reports taker-buy volume
        delta = bv - (v - bv)
    else:
        rng = h - lo
        delta = (((c - lo) - (h - c)) / rng) * v if rng > 0.0 else 0.0
    cvd += delta
    state = (n_bars + 1.0, c, tr_sum, atr, gain, loss, e20, e50, e200, slow, fast, signal, cvd)
    outputs = (atr_out, rsi_out, macd_out, signal_out, hist_out, e20_out, e50_out, e200_out, cvd)
    return state, outputs


@njit(inline="always", cache=True)
def _load(state: FloatArray) -> tuple[float, ...]:
    """The state vector as a tuple of floats (`float()`: a no-op compiled; in plain Python it
    makes the arithmetic run on Python floats, several times faster than numpy scalars)."""
    s = state
    return (float(s[0]), float(s[1]), float(s[2]), float(s[3]), float(s[4]), float(s[5]), float(s[6]),
            float(s[7]), float(s[8]), float(s[9]), float(s[10]), float(s[11]), float(s[12]))  # fmt: skip


@njit(inline="always", cache=True)
def _store(s: tuple[float, ...], state: FloatArray) -> None:
    for j in range(STATE_SIZE):
        state[j] = s[j]


@njit(inline="always", cache=True)
def _span(
    s: tuple[float, ...], start: int, stop: int, h: FloatArray, lo: FloatArray, c: FloatArray,
    v: FloatArray, bv: FloatArray, out: tuple[FloatArray, ...], warm: bool, with_bv: bool,
) -> tuple[float, ...]:  # fmt: skip
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = out
    for t in range(start, stop):
        s, r = _step(s, h[t], lo[t], c[t], v[t], bv[t] if with_bv else np.nan, warm)
        a0[t], a1[t], a2[t], a3[t], a4[t], a5[t], a6[t], a7[t], a8[t] = r
    return s


@njit(cache=True)
def run(
    state: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray, v: FloatArray, bv: FloatArray,
    out: tuple[FloatArray, ...],
) -> None:  # fmt: skip
    """Every bar in order into the `N_OUTPUTS` arrays of `out` (NaN = warm-up); updates `state`.
    `bv` is the taker-buy volume (NaN where unknown), or empty when no bar has it."""
    n = c.shape[0]
    warm_bars = min(n, max(0, WARMED_UP - int(state[_N])))
    s = _load(state)
    # Four loops over the same inlined `_step`, each with `warm` and `with_bv` constant, so LLVM
    # compiles the steady-state loop without the warm-up or taker-volume branches.
    if bv.shape[0] > 0:
        s = _span(s, 0, warm_bars, h, lo, c, v, bv, out, True, True)
        s = _span(s, warm_bars, n, h, lo, c, v, bv, out, False, True)
    else:  # no taker-buy volume at all: one array less to read
        s = _span(s, 0, warm_bars, h, lo, c, v, bv, out, True, False)
        s = _span(s, warm_bars, n, h, lo, c, v, bv, out, False, False)
    _store(s, state)


@njit(cache=True)
def step_one(state: FloatArray, h: float, lo: float, c: float, v: float, bv: float, out: FloatArray) -> None:
    """One bar (the streaming path): `state` updated in place, outputs into `out`."""
    s, r = _step(_load(state), h, lo, c, v, bv, True)
    _store(s, state)
    for j in range(N_OUTPUTS):
        out[j] = r[j]
