from __future__ import annotations

import math
import re
from pathlib import Path

from apextrader.report.gonogo import evaluate, with_analysis
from apextrader.report.run_report import write_run_report
from apextrader.report.run_summary import (
    AgentRecord,
    ConsumerAccount,
    FillRecord,
    PriceSeries,
    RunSummary,
    TrackRecord,
)


def summary(**over: object) -> RunSummary:
    base: dict[str, object] = {
        "pipeline": "btc-perp",
        "source": "synthetic",
        "started_at": 1_700_000_000.0,
        "ended_at": 1_700_000_060.0,
        "agents": [AgentRecord(key="execution-stable", restarts=1, ready_at_end=True)],
        "consumers": [ConsumerAccount(stream="S", durable="d", matched=10, acked=8, pending=0, dlq=2)],
        "dlq_total": 2,
        "tracks": [
            TrackRecord(
                track="stable",
                capital=95_000,
                weight_applied=95,
                approved=3,
                fills=3,
                duplicate_fills=0,
                slippage_bps=[1.0, 2.0, -1.0],
                latency_p50_ms=3.0,
                latency_p99_ms=12.0,
                latency_buckets=[(0.005, 2.0), (0.025, 3.0), (math.inf, 3.0)],
                expectancy={"breakout": 0.4},
                equity=[(1_700_000_000.0, 95_000.0), (1_700_000_060.0, 95_010.0)],
            )
        ],
        "fills": [
            FillRecord(
                time=1_700_000_030.0,
                track="stable",
                exchange="binance",
                symbol="BTC/USDT:USDT",
                side="buy",
                price=100.0,
                amount=1.0,
                slippage_bps=1.0,
                correlation_id="a" * 32,
                traced=True,
            )
        ],
        "prices": [
            PriceSeries(exchange="binance", symbol="BTC/USDT:USDT", times=[1_700_000_000.0], closes=[100.0])
        ],
    }
    base.update(over)
    return RunSummary.model_validate(base)


def verdicts(s: RunSummary) -> dict[str, str]:
    return {r.criterion: r.verdict for r in evaluate(s)}


def test_measured_rows_pass_and_unmeasured_are_na() -> None:
    v = verdicts(summary())
    assert v == {
        "Message Bus": "PASS",
        "DLQ": "PASS",
        "Tracing": "PASS",
        "Agents": "PASS",
        "Backtest": "PASS",
        "Risk": "PASS",
        "Execution": "PASS",
        "Monitoring": "N/A",
    }


def test_missing_measurements_are_never_pass() -> None:
    s = summary(
        tracks=[
            TrackRecord(
                track="stable", capital=1, weight_applied=None, approved=0, fills=0, duplicate_fills=0
            )
        ],
        fills=[],
        consumers=[],
    )
    v = verdicts(s)
    for row in ("Message Bus", "DLQ", "Tracing", "Backtest", "Execution"):
        assert v[row] == "N/A", row


def test_failures_are_reported() -> None:
    bad_track = (
        summary()
        .tracks[0]
        .model_copy(
            update={
                "latency_p99_ms": 150.0,
                "slippage_bps": [9.0, 7.0],
                "margin_violations": 1.0,
                "expectancy": {"breakout": -0.1},
            }
        )
    )
    s = summary(
        tracks=[bad_track],
        consumers=[ConsumerAccount(stream="S", durable="d", matched=10, acked=7, pending=0, dlq=2)],
        agents=[AgentRecord(key="risk-manager-canary", restarts=0, ready_at_end=False)],
        fills=[summary().fills[0].model_copy(update={"traced": False})],
    )
    v = verdicts(s)
    assert {k for k, x in v.items() if x == "FAIL"} == {
        "Message Bus",
        "DLQ",
        "Tracing",
        "Agents",
        "Backtest",
        "Risk",
        "Execution",
    }


def test_bus_downtime_over_one_percent_fails() -> None:
    assert verdicts(summary(bus_downtime_s=1.0))["Message Bus"] == "FAIL"  # 1 s of 60 s
    assert verdicts(summary(bus_downtime_s=0.3))["Message Bus"] == "PASS"


def test_report_is_self_contained(tmp_path: Path) -> None:
    out = write_run_report(summary(), tmp_path / "r.html")
    text = out.read_text()
    # nothing is loaded from the network: no <script src=...> or <link href=...> to a URL
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?https?://", text)
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js itself is inlined
    assert "Go/No-Go" in text and "Trades on price" in text and "PASS" in text
    assert text.count("plotly-graph-div") >= 4


def test_goals_are_the_specs_thresholds() -> None:
    """Issue 16's disagreement: with maxBusP99Ms 50 the canary aborted at 50 ms while the report
    passed at 99 ms. The report now judges by the spec's thresholds."""
    track = summary().tracks[0].model_copy(update={"latency_p99_ms": 60.0, "slippage_bps": [4.0]})
    default = {r.criterion: r for r in evaluate(summary(tracks=[track]))}
    assert default["Message Bus"].verdict == "PASS" and "100 ms" in default["Message Bus"].goal
    strict = summary(tracks=[track], thresholds={"maxBusP99Ms": 50.0, "maxAvgSlippageBps": 3.0})
    rows = {r.criterion: r for r in evaluate(strict)}
    assert rows["Message Bus"].verdict == "FAIL" and "50 ms" in rows["Message Bus"].goal
    assert rows["Execution"].verdict == "FAIL" and "3 bps" in rows["Execution"].goal


def test_summary_records_the_judgement_per_track_and_criterion() -> None:
    judged = with_analysis(summary(thresholds={"maxBusP99Ms": 10.0}))
    checks = {c.name: c for c in judged.analysis["stable"]}
    assert checks["maxBusP99Ms"].threshold == 10.0 and checks["maxBusP99Ms"].result == "Fail"
    assert checks["maxDlqLoss"].result == "Inconclusive"  # no consumer of the stable track was recorded
    assert judged.thresholds["maxAvgSlippageBps"] == 5.0  # the default fills what the run did not set
    again = RunSummary.model_validate_json(judged.model_dump_json())
    assert again.analysis == judged.analysis


def test_report_says_what_the_aborted_canary_did_with_its_positions(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from apextrader.canary import advance
    from apextrader.contracts.canary_spec import CanarySpec
    from apextrader.report.run_summary import CanaryRecord

    spec = CanarySpec.model_validate({"weight": 5, "abort": True, "abortPolicy": "flatten"})
    status = advance(spec, None, datetime(2026, 1, 1, tzinfo=UTC))
    record = CanaryRecord(
        phase=status.phase, message=status.message, abort_policy="flatten", open_notional=0.0
    )
    text = write_run_report(summary(canary=record), tmp_path / "r.html").read_text()
    assert "canary phase Aborted (abortPolicy flatten)" in text
    assert "positions flattened" in text and "open notional at the end 0" in text
