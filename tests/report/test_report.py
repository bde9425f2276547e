"""Report building blocks: self-contained page, tables that never invent numbers, thinned figures,
and the run report's tracks table (own weights, units, slippage that shows its tail)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from apextrader.report import Section, figure_drawdown, figure_equity, figure_html, html_page, table_html
from apextrader.report.figures import MAX_POINTS
from apextrader.report.run_report import render_run_report
from apextrader.report.run_summary import PriceSeries, RunSummary, TrackRecord
from apextrader.report.tracks import gate_records, own_weight, slippage_summary
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


def _summary(slippage: dict[str, list[float]], canary_weight: float | None) -> RunSummary:
    tracks = [
        TrackRecord(
            track=t,
            capital=c,
            weight_applied=canary_weight,
            approved=len(x),
            fills=len(x),
            duplicate_fills=0,
            slippage_bps=x,
        )
        for (t, x), c in zip(slippage.items(), (95_000.0, 5_000.0), strict=False)
    ]
    prices = [PriceSeries(exchange="binance", symbol="BTC/USDT:USDT", times=[0.0], closes=[1.0])]
    return RunSummary(pipeline="p", source="synthetic", started_at=0.0, ended_at=60.0, agents=[],
                      consumers=[], dlq_total=0, tracks=tracks, prices=prices)  # fmt: skip


def test_slippage_summary_shows_the_tail_a_mean_hides() -> None:
    s = slippage_summary([-1.0] * 98 + [375.0, 160.0])  # 1 bp improvements, two large adverse fills
    assert s.signed_mean == pytest.approx((-98 + 535) / 100)
    assert s.mean_adverse == pytest.approx(535 / 100) and s.worst == 375.0
    assert s.p95_abs == pytest.approx(1.0) and slippage_summary([]).signed_mean is None
    wide = slippage_summary([0.0] * 90 + [200.0] * 10)
    assert wide.p95_abs == 200.0 and wide.signed_mean == pytest.approx(20.0)


def test_tracks_table_gives_each_track_its_own_weight_and_units() -> None:
    page = render_run_report(_summary({"stable": [2.0, -1.0], "canary": [4.0]}, 5.0))
    table = page[page.index("<h2>Tracks</h2>") : page.index("</table>", page.index("<h2>Tracks</h2>"))]
    rows = re.findall(r"<tr><td>(stable|canary)</td><td>([^<]*)</td><td>([^<]*)</td>", table)
    assert rows == [("stable", "95", "95,000"), ("canary", "5", "5,000")]
    for heading in ("weight (% of capital)", "capital (USDT)", "slippage mean (bps, signed, + adverse)",
                    "mean adverse slippage (bps)", "p95 |slippage| (bps)"):  # fmt: skip
        assert f"<th>{heading}</th>" in table
    assert "<td>+0.50</td>" in table and "<td>1.00</td>" in table  # stable: signed, mean adverse
    assert own_weight("stable", None, False) == 100.0 and own_weight("canary", None, True) is None


@dataclass
class _Sample:
    name: str
    labels: dict[str, str]
    value: float


def test_gate_section_lists_each_record_from_the_backtester_gauges() -> None:
    labels = {"track": "stable", "strategy": "breakout", "exchange": "binance", "symbol": "BTC/USDT:USDT"}
    other = {**labels, "track": "canary"}
    samples = [
        _Sample("apex_walkforward_statistic", labels, 3.1),
        _Sample("apex_walkforward_threshold", labels, 2.4),
        _Sample("apex_walkforward_accepted", labels, 1.0),
        _Sample("apex_walkforward_accepted", other, 0.0),  # no statistic yet: fewer than 2 trades
        _Sample("apex_expectancy", {"track": "stable", "strategy": "breakout"}, 0.001),
    ]
    gate = gate_records(samples)
    assert [(g.track, g.accepted, g.statistic, g.threshold) for g in gate] == [
        ("canary", False, None, None),
        ("stable", True, 3.1, 2.4),
    ]
    page = render_run_report(_summary({"stable": [1.0]}, 5.0).model_copy(update={"gate": gate}))
    section = page[page.index("<h2>Walk-forward gate</h2>") :]
    assert "1 of 2 records accepted" in section and "<td>+3.10</td><td>2.40</td>" in section
    assert '<span class="FAIL">rejected</span>' in section and "<td>–</td>" in section
