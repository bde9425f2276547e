"""Performance statistics of one backtest (the `stats.json` keys; docs/backtest.md).

* Returns are simple bar-to-bar returns of equity marked at each close; the first bar's return is
  against the starting capital.
* Annualisation uses the bar period (median spacing of the timestamps) over a 365-day year (crypto
  trades every day): `sharpe = mean / std * sqrt(bars_per_year)` (std with ddof=1, no risk-free
  rate); `sortino` divides by the downside deviation `sqrt(mean(min(r, 0)^2))`.
* `cagr` = (final / capital) ** (1 / years) - 1 over the span of the bars.
* `max_drawdown` is positive: the largest fall from a running peak of equity, as a fraction.
* Trade statistics use closed trades (`trades` counts them): `expectancy` is the mean trade
  return on the equity at entry (net of fees, slippage and funding), `expectancy_se` its standard
  error (std ddof=1 / sqrt(n)); `profit_factor` = gross profit / gross loss; `exposure` is the
  share of bars that close with a position. Positions still open at the end are counted apart
  (`open_trades`, their unrealised `open_pnl` at the last close); equity includes them.
* Undefined values (no trades, no losses, one bar) are `None` (null in JSON), never a made-up number.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

F64 = npt.NDArray[np.float64]
YEAR_MS = 365.0 * 24 * 3600 * 1000


class Stats(BaseModel):
    model_config = ConfigDict(frozen=True)

    total_return: float
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    win_rate: float | None
    profit_factor: float | None
    expectancy: float | None
    expectancy_se: float | None
    trades: int
    exposure: float
    #: Positions still open at the last bar (`status: open` in trades.parquet) and their PnL there.
    open_trades: int = 0
    open_pnl: float = 0.0
    #: Per-fold stats of a walk-forward run (empty otherwise).
    folds: list[dict[str, Any]] = Field(default_factory=list)
    #: Per strategy/symbol verdict of a walk-forward run (accepted, reason, expectancy, trades).
    verdicts: list[dict[str, Any]] = Field(default_factory=list)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def bar_period_ms(timestamps: pl.Series) -> float | None:
    if timestamps.len() < 2:
        return None
    diffs = timestamps.cast(pl.Datetime("ms", "UTC")).dt.epoch("ms").diff().drop_nulls()
    period = float(np.median(diffs.to_numpy()))
    return period if period > 0 else None


def max_drawdown(equity: F64) -> float:
    if equity.size == 0:
        return 0.0
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def trade_stats(returns: F64, pnl: F64) -> dict[str, Any]:
    n = int(returns.size)
    if n == 0:
        return {"win_rate": None, "profit_factor": None, "expectancy": None, "expectancy_se": None}
    gross_loss = float(-pnl[pnl < 0].sum())
    gross_profit = float(pnl[pnl > 0].sum())
    return {
        "win_rate": float((pnl > 0).mean()),
        "profit_factor": gross_profit / gross_loss if gross_loss > 0 else None,
        "expectancy": float(returns.mean()),
        "expectancy_se": float(returns.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
    }


def compute_stats(
    equity: F64,
    timestamps: pl.Series,
    trades: pl.DataFrame,
    position: F64,
    capital: float,
) -> Stats:
    """Stats of one run; `equity`/`position` at each close, `trades` as `trades.parquet`."""
    is_closed = pl.col("status") == "closed" if "status" in trades.columns else pl.lit(True)
    closed = trades.filter(is_closed)
    final = float(equity[-1]) if equity.size else capital
    total_return = final / capital - 1.0
    returns = np.diff(equity, prepend=capital) / np.concatenate(([capital], equity[:-1]))
    period = bar_period_ms(timestamps)
    sharpe = sortino = cagr = None
    if period is not None and returns.size > 1:
        bars_per_year = YEAR_MS / period
        std = float(returns.std(ddof=1))
        mean = float(returns.mean())
        sharpe = _finite(mean / std * math.sqrt(bars_per_year)) if std > 0 else None
        downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
        sortino = _finite(mean / downside * math.sqrt(bars_per_year)) if downside > 0 else None
        years = returns.size * period / YEAR_MS
        growth = math.log(final / capital) / years if final > 0 else -math.inf
        # A short sample annualises to absurd numbers; beyond float range it is undefined.
        cagr = _finite(math.expm1(growth)) if growth < 700 else None
    return Stats(
        total_return=total_return,
        cagr=cagr,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max_drawdown(np.concatenate(([capital], equity))),
        trades=closed.height,
        exposure=float((position != 0).mean()) if position.size else 0.0,
        open_trades=trades.height - closed.height,
        open_pnl=float(trades.filter(~is_closed)["pnl"].sum()),
        **trade_stats(closed["ret"].to_numpy(), closed["pnl"].to_numpy()),
    )
