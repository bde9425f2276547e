"""The `apex backtest` report: stats, walk-forward verdicts and folds, equity, drawdown, and price
with entries/exits per symbol."""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from apextrader.quant.backtest.runner import RunOutput
from apextrader.report.figures import figure_drawdown, figure_equity, figure_html, figure_price
from apextrader.report.html import Section, html_page, table_html

STAT_KEYS: Final = (
    "total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor",
    "expectancy", "expectancy_se", "trades", "exposure",
)  # fmt: skip
FOLD_COLUMNS: Final = (
    "symbol", "strategy", "fold", "out_of_sample_start", "out_of_sample_end", "params",
    "in_sample_expectancy", "in_sample_trades", "trades", "expectancy", "total_return",
)  # fmt: skip


def stats_section(stats: dict[str, Any], heading: str = "Statistics") -> Section:
    return Section(heading, table_html([{"statistic": k, "value": stats.get(k)} for k in STAT_KEYS]))


def _params_text(params: dict[str, Any] | None) -> str:
    return "" if params is None else ", ".join(f"{k}={v}" for k, v in params.items() if k != "enabled")


def folds_section(folds: list[dict[str, Any]]) -> Section:
    rows = [{**f, "params": _params_text(f.get("params"))} for f in folds]
    return Section("Walk-forward folds (out-of-sample)", table_html(rows, FOLD_COLUMNS))


def verdicts_section(verdicts: list[dict[str, Any]]) -> Section:
    rows = [{**v, "accepted": "PASS" if v["accepted"] else "FAIL"} for v in verdicts]
    return Section("Walk-forward verdicts", table_html(rows))


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
