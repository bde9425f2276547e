"""The backtest engine: one event-accurate pass per symbol over OHLCV bars (numba-compiled loop).

Conventions (the engine, `apex backtest`, the walk-forward and the live gate all share them):

* **Fills.** A signal computed on bar t (on its close) fills at bar t+1's **open**, never at t's
  close. A signal on the last bar never fills.
* **Slippage** is `slippage_bps` against the trader on every fill: buys at `price * (1 + s)`,
  sells at `price * (1 - s)`. **Fees** are `fees_bps` of the filled notional (at the slipped
  price), on entry and on exit.
* **Signals** (`entry_long`, `exit_long`, `entry_short`, `exit_short`, resolved at the next open
  with the position held then): an entry and an exit of the same side on one bar cancel each other;
  a long and a short entry on one bar cancel each other; an exit with no matching position is
  ignored; an entry while already in that side is ignored (no pyramiding); an entry of the
  opposite side **closes** the position (it does not reverse; signal again to open). These are
  vectorbt's `from_signals(upon_*_conflict="ignore", upon_dir_conflict="ignore",
  upon_opposite_entry="close", accumulate=False)` rules.
* **Sizing.** `percent`: an entry spends `size_pct` of cash including the entry fee,
  `size = size_pct * cash / (price * (1 + fee))` (vectorbt's `size_type="percent"`), long or
  short. `risk` (strategies): `size = risk_per_trade * equity / stop_distance`, capped so the
  notional stays within `max_position_pct * max_leverage * equity`.
* **Stops and targets** are distances (price units) given with the entry signal and re-anchored
  on the fill price: `stop = fill - side * stop_distance`, `target = fill + side * target_distance`.
  They are checked on every bar from the entry bar on, against the bar's low/high. **Worst case:**
  when one bar reaches both, the stop fills first. A bar that opens beyond a level fills at the
  open (worse for stops, better for targets); otherwise at the level. Slippage applies to both.
* **Funding** (perpetuals): `funding_rate` at a bar whose open time is a funding time (every
  `funding_hours`, 00:00 UTC-aligned) settles at that open on the position carried into it:
  `cash -= position * open * rate` (longs pay a positive rate, shorts receive it).
* **Equity** = cash + position * close, marked at every bar's close. Shorts credit the sale
  proceeds to cash, so equity is the same formula for both sides.
* **End.** An open position at the last bar stays open (equity carries it) and is listed as a
  trade with `status: open`: exit time and price are the last bar's close, no exit slippage or
  fee, `pnl` the unrealised PnL there (vectorbt's open trade records). `close_at_end`
  (walk-forward folds, `apex backtest --close-at-end`) closes it at the last close with slippage
  and fees instead (`exit_reason: end`).
* **Trades** report net `pnl` = side * size * (exit - entry) - fees - funding and the trade's
  return on the equity at entry (`ret`); the stats' expectancy averages the closed trades'.
"""

from apextrader.quant.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    SignalColumns,
    run_backtest,
)

__all__ = ["BacktestConfig", "BacktestResult", "SignalColumns", "run_backtest"]
