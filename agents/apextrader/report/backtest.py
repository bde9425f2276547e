"""The `apex backtest` report: stats, walk-forward verdicts and folds, equity, drawdown, and price
with entries/exits per symbol."""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from apextrader.quant.backtest.runner import RunOutput
from apextrader.report.figures import figure_drawdown, figure_equity, figure_html, figure_price
from apextrader.report.html import Section, html_page, table_html

#: stats.json key -> unit (fractions are of the capital, or of the equity at entry per trade).
STAT_UNITS: Final = {
    "total_return": "fraction", "cagr": "fraction / year", "sharpe": "annualised", "sortino": "annualised",
    "max_drawdown": "fraction of peak", "win_rate": "fraction of closed trades", "profit_factor": "ratio",
    "expectancy": "return / trade", "expectancy_se": "return / trade", "trades": "closed trades",
    "exposure": "fraction of bars", "open_trades": "positions open at the end",
    "open_pnl": "quote currency, unrealised",
}  # fmt: skip
STAT_KEYS: Final = tuple(STAT_UNITS)
#: fold row key -> column heading with its unit.
FOLD_COLUMNS: Final = {
    "symbol": "symbol", "strategy": "strategy", "fold": "fold",
    "out_of_sample_start": "OOS start (UTC)", "out_of_sample_end": "OOS end (UTC)", "params": "chosen params",
    "in_sample_expectancy": "IS expectancy (return / trade)", "in_sample_trades": "IS trades",
    "trades": "OOS trades", "expectancy": "OOS expectancy (return / trade)",
    "total_return": "OOS return (fraction)",
}  # fmt: skip
#: verdict key -> column heading with its unit.
VERDICT_COLUMNS: Final = {
    "symbol": "symbol", "strategy": "strategy", "accepted": "verdict",
    "statistic": "t-statistic", "threshold": "threshold (t)", "trials": "trials (parameter sets)",
    "method": "method", "trades": "OOS trades", "expectancy": "OOS expectancy (return / trade)",
    "expectancy_se": "standard error (return / trade)", "reason": "reason",
}  # fmt: skip


def _relabel(rows: list[dict[str, Any]], columns: dict[str, str]) -> list[dict[str, Any]]:
    return [{label: r.get(key) for key, label in columns.items()} for r in rows]


def stats_section(stats: dict[str, Any], heading: str = "Statistics") -> Section:
    rows = [{"statistic": k, "value": stats.get(k), "unit": unit} for k, unit in STAT_UNITS.items()]
    return Section(heading, table_html(rows))


def _params_text(params: dict[str, Any] | None) -> str:
    return "" if params is None else ", ".join(f"{k}={v}" for k, v in params.items() if k != "enabled")


def folds_section(folds: list[dict[str, Any]]) -> Section:
    rows = [{**f, "params": _params_text(f.get("params"))} for f in folds]
    return Section("Walk-forward folds (out-of-sample)", table_html(_relabel(rows, FOLD_COLUMNS)))


def verdicts_section(verdicts: list[dict[str, Any]]) -> Section:
    """Accepted when the t-statistic beats the threshold (docs/backtest.md)."""
    rows = [{**v, "accepted": "PASS" if v["accepted"] else "FAIL"} for v in verdicts]
    return Section("Walk-forward verdicts", table_html(_relabel(rows, VERDICT_COLUMNS)))


def backtest_page(output: RunOutput, title: str) -> str:
    stats = output.stats.model_dump()
    sections = [stats_section(stats)]
    if output.stats.verdicts:
        sections.append(verdicts_section(output.stats.verdicts))
    if output.stats.folds:
        sections.append(folds_section(output.stats.folds))
    sections.append(Section("Equity", figure_html(figure_equity(output.equity))))
    sections.append(Section("Drawdown", figure_html(figure_drawdown(output.equity))))
    for symbol, prices in output.prices.items():
        trades = output.trades.filter(pl.col("symbol") == symbol) if output.trades.height else output.trades
        sections.append(
            Section(f"{symbol}: price, entries and exits", figure_html(figure_price(prices, trades)))
        )
    return html_page(title, sections)
