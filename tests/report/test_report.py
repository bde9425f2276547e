"""Report building blocks: self-contained page, tables that never invent numbers, thinned figures."""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from apextrader.report import Section, figure_drawdown, figure_equity, figure_html, html_page, table_html
from apextrader.report.figures import MAX_POINTS
from tests.quant.bars import random_bars


def test_page_inlines_plotly_and_loads_nothing_from_outside() -> None:
    bars = random_bars(200)
    page = html_page(
        "t <x>", [Section("Equity", figure_html(figure_equity(bars.select("timestamp", "close"))))]
    )
    assert re.search(r"<script[^>]+src=", page) is None and "<link" not in page
    assert "t &lt;x&gt;" in page and page.count("Plotly.newPlot") == 1


def test_table_shows_missing_values_as_na() -> None:
    html = table_html([{"k": "sharpe", "v": None}, {"k": "trades", "v": 3}])
    assert "<td>n/a</td>" in html and "<td>3</td>" in html


def test_drawdown_keeps_the_worst_point_when_thinning() -> None:
    n = MAX_POINTS * 3 + 7
    equity = np.full(n, 100.0)
    equity[12_345] = 50.0  # a one-bar 50 % drawdown
    frame = pl.DataFrame({"timestamp": random_bars(n)["timestamp"], "equity": equity})
    fig = figure_drawdown(frame)
    y = np.asarray(fig.data[0].y)
    assert y.size <= MAX_POINTS and y.min() == -50.0
