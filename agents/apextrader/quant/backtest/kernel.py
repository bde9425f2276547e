"""The bar loop, compiled with numba: one pass over one symbol's bars, O(bars + trades).

All conventions are documented in `apextrader.quant.backtest` (the package docstring); this module
only implements them. Arrays in, arrays out, so the caller (polars/numpy) owns every allocation
that outlives the call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from apextrader.quant.jit import njit

F64 = npt.NDArray[np.float64]
B8 = npt.NDArray[np.bool_]

SIZING_PERCENT = 0  # size_pct of cash, vectorbt `size_type="percent"` semantics
SIZING_RISK = 1  # risk_per_trade of equity / stop distance, capped by max_notional x equity

EXIT_SIGNAL = 0
EXIT_STOP = 1
EXIT_TARGET = 2
EXIT_END = 3
EXIT_OPEN = 4  # not exited: still open at the last bar, marked at its close (no exit costs yet)

# Trade record columns (float matrix; indices stored as floats are exact below 2**53).
T_ENTRY_I, T_EXIT_I, T_SIDE, T_SIZE, T_ENTRY_PX, T_EXIT_PX, T_FEES, T_FUNDING, T_PNL, T_EQ0, T_REASON = range(
    11
)
TRADE_COLUMNS = 11


@njit(cache=True, nogil=True, inline="always")
def _record(
    trades: Any,
    k: int,
    entry_i: int,
    exit_i: int,
    side: float,
    size: float,
    entry_px: float,
    exit_px: float,
    fees: float,
    funding: float,
    eq0: float,
    reason: int,
) -> None:
    trades[k, T_ENTRY_I] = entry_i
    trades[k, T_EXIT_I] = exit_i
    trades[k, T_SIDE] = side
    trades[k, T_SIZE] = size
    trades[k, T_ENTRY_PX] = entry_px
    trades[k, T_EXIT_PX] = exit_px
    trades[k, T_FEES] = fees
    trades[k, T_FUNDING] = funding
    trades[k, T_PNL] = side * size * (exit_px - entry_px) - fees - funding
    trades[k, T_EQ0] = eq0
    trades[k, T_REASON] = reason


@njit(cache=True, nogil=True, inline="always")
def _close(
    trades: Any,
    k: int,
    pos: float,
    level: float,
    slip: float,
    fee: float,
    cash: float,
    entry_i: int,
    t: int,
    entry_px: float,
    entry_fee: float,
    funding: float,
    eq0: float,
    reason: int,
) -> float:
    """Close the whole position at `level` (slippage against it), record trade `k`; the new cash."""
    side = 1.0 if pos > 0.0 else -1.0
    px = level * (1.0 - slip) if side > 0 else level * (1.0 + slip)
    size = abs(pos)
    xfee = size * px * fee
    _record(trades, k, entry_i, t, side, size, entry_px, px, entry_fee + xfee, funding, eq0, reason)
    return cash + (side * size * px - xfee)  # as `cash += ...` did: same rounding


@njit(cache=True, nogil=True)
def run_kernel(
    open_: F64,
    high: F64,
    low: F64,
    close: F64,
    funding: F64,
    entry_long: B8,
    exit_long: B8,
    entry_short: B8,
    exit_short: B8,
    stop_dist: F64,
    target_dist: F64,
    init_cash: float,
    fee: float,
    slip: float,
    sizing: int,
    size_pct: float,
    risk_per_trade: float,
    max_notional: float,
    close_at_end: bool,
) -> tuple[F64, F64, Any]:
    """Simulate; return (equity at each close, signed position at each close, trades matrix; its
    last row is the open position, reason `EXIT_OPEN`, when one is left at the end)."""
    n = open_.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    max_trades = 1
    for i in range(n):
        if entry_long[i] or entry_short[i]:
            max_trades += 1
    trades = np.empty((max_trades, TRADE_COLUMNS))
    n_trades = 0

    cash = init_cash
    pos = 0.0  # signed base units
    entry_i = -1
    entry_px = 0.0
    entry_fee = 0.0
    funding_paid = 0.0
    eq_at_entry = 0.0
    stop_px = np.nan
    target_px = np.nan
    # Signals of the previous bar, resolved at this bar's open.
    p_el = False
    p_xl = False
    p_es = False
    p_xs = False
    p_stop = np.nan
    p_target = np.nan

    for t in range(n):
        o = open_[t]
        # 1. Funding settles at the bar's open on the position carried into it.
        if pos != 0.0 and funding[t] != 0.0:
            paid = pos * o * funding[t]
            cash -= paid
            funding_paid += paid

        # 2. Resolve the previous bar's signals at this open (vectorbt's conflict rules: ignore).
        el, xl, es, xs = p_el, p_xl, p_es, p_xs
        if el and xl:
            el = False
            xl = False
        if es and xs:
            es = False
            xs = False
        if el and es:
            el = False
            es = False
        close_now = (pos > 0.0 and (xl or es)) or (pos < 0.0 and (xs or el))
        open_side = 0
        if pos == 0.0:
            if el:
                open_side = 1
            elif es:
                open_side = -1

        if close_now:
            cash = _close(trades, n_trades, pos, o, slip, fee, cash, entry_i, t, entry_px, entry_fee,
                          funding_paid, eq_at_entry, EXIT_SIGNAL)  # fmt: skip
            n_trades += 1
            pos = 0.0

        if open_side != 0:
            side = float(open_side)
            px = o * (1.0 + slip) if open_side > 0 else o * (1.0 - slip)
            eq_now = cash  # flat here, so equity is cash
            if sizing == SIZING_PERCENT:
                size = size_pct * cash / (px * (1.0 + fee))
            else:
                size = 0.0
                if p_stop > 0.0:
                    size = risk_per_trade * eq_now / p_stop
                cap = max_notional * eq_now / px
                if size > cap:
                    size = cap
            if size > 0.0 and cash > 0.0:
                entry_fee = size * px * fee
                cash -= side * size * px + entry_fee
                pos = side * size
                entry_i = t
                entry_px = px
                funding_paid = 0.0
                eq_at_entry = eq_now
                stop_px = px - side * p_stop if p_stop > 0.0 else np.nan
                target_px = px + side * p_target if p_target > 0.0 else np.nan

        # 3. Stops and targets, intrabar. Worst case: when the bar's range reaches both, the stop
        #    fills first. A gap through a level fills at the open.
        if pos != 0.0 and (stop_px == stop_px or target_px == target_px):
            side = 1.0 if pos > 0.0 else -1.0
            level = np.nan
            reason = EXIT_STOP
            if side > 0:
                if stop_px == stop_px and low[t] <= stop_px:
                    level = min(o, stop_px)
                elif target_px == target_px and high[t] >= target_px:
                    level = max(o, target_px)
                    reason = EXIT_TARGET
            else:
                if stop_px == stop_px and high[t] >= stop_px:
                    level = max(o, stop_px)
                elif target_px == target_px and low[t] <= target_px:
                    level = min(o, target_px)
                    reason = EXIT_TARGET
            if level == level:
                cash = _close(trades, n_trades, pos, level, slip, fee, cash, entry_i, t, entry_px,
                              entry_fee, funding_paid, eq_at_entry, reason)  # fmt: skip
                n_trades += 1
                pos = 0.0

        # 4. An open position at the last bar is closed at its close when asked (walk-forward folds).
        c = close[t]
        if close_at_end and t == n - 1 and pos != 0.0:
            cash = _close(trades, n_trades, pos, c, slip, fee, cash, entry_i, t, entry_px, entry_fee,
                          funding_paid, eq_at_entry, EXIT_END)  # fmt: skip
            n_trades += 1
            pos = 0.0

        # 5. Mark to market at the close; remember this bar's signals for the next open. A position
        #    still open after the last bar is listed as an open trade, unrealised PnL at that close.
        equity[t] = cash + pos * c
        if t == n - 1 and pos != 0.0:
            side = 1.0 if pos > 0.0 else -1.0
            _record(trades, n_trades, entry_i, t, side, abs(pos), entry_px, c, entry_fee, funding_paid,
                    eq_at_entry, EXIT_OPEN)  # fmt: skip
            n_trades += 1
        position[t] = pos
        p_el = entry_long[t]
        p_xl = exit_long[t]
        p_es = entry_short[t]
        p_xs = exit_short[t]
        p_stop = stop_dist[t]
        p_target = target_dist[t]

    return equity, position, trades[:n_trades]
