"""The Go/No-Go table of an `apex up` run: a renderer over `canary.analysis.judge`, the judgement the
operator and the canary analysis use, with the spec's thresholds (`summary.thresholds`) as the goals.

A row that was not measured is `N/A` (with the reason), never `PASS` (docs/conventions.md §7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from apextrader.canary.analysis import AnalysisTrack, CheckName, judge, overall, thresholds
from apextrader.contracts.canary_spec import CanaryAnalysis
from apextrader.contracts.status import CheckResult
from apextrader.report.run_summary import CriterionRecord, RunSummary, TrackRecord

Verdict = Literal["PASS", "FAIL", "N/A"]
VERDICT: dict[CheckResult, Verdict] = {"Pass": "PASS", "Fail": "FAIL", "Inconclusive": "N/A"}


@dataclass(frozen=True)
class GoNoGoRow:
    criterion: str
    goal: str
    measured: str
    verdict: Verdict


def _limits(s: RunSummary) -> dict[CheckName, float]:
    found = cast(dict[CheckName, float], dict(s.thresholds))
    return {**thresholds(CanaryAnalysis()), **found}


def track_values(s: RunSummary, t: TrackRecord) -> dict[CheckName, float | None]:
    """What the run measured for one track, per criterion, over the whole run."""
    decided = s.stage_latency.get("order.filled")  # exact, per event: snapshot → execution decision
    dlq = [c.dlq for c in s.consumers if c.durable.endswith(f"-{t.track}")]
    return {
        "maxAvgSlippageBps": sum(max(0.0, x) for x in t.slippage_bps) / len(t.slippage_bps)
        if t.slippage_bps
        else None,
        "maxMarginViolations": t.margin_violations if s.tracks else None,
        "maxDlqLoss": float(sum(dlq)) if dlq else None,
        "maxBusP99Ms": decided.p99_ms if decided else t.latency_p99_ms,
        "minExpectancy": min(t.expectancy.values()) if t.expectancy else None,
    }


def with_analysis(s: RunSummary) -> RunSummary:
    """The summary with every track judged (what `summary.json` records and the table renders)."""
    at = datetime.fromtimestamp(s.ended_at, UTC)
    limits = _limits(s)
    analysis = {
        t.track: [
            CriterionRecord(name=c.name, value=c.value, threshold=c.threshold, result=c.result)
            for c in judge(limits, track_values(s, t), at, cast(AnalysisTrack, t.track)).checks
        ]
        for t in s.tracks
    }
    return s.model_copy(update={"thresholds": dict(limits), "analysis": analysis})


def _criterion_row(s: RunSummary, area: str, name: CheckName, goal: str, fmt: str) -> GoNoGoRow:
    judged = with_analysis(s).analysis if not s.analysis else s.analysis
    checks = {track: c for track, cs in judged.items() for c in cs if c.name == name}
    threshold = _limits(s)[name]
    if not checks:
        return GoNoGoRow(area, goal.format(threshold), "no tracks", "N/A")
    measured = ", ".join(
        f"{track} {fmt.format(c.value) if c.value is not None else 'n/a'}" for track, c in checks.items()
    )
    results = [cast(CheckResult, c.result) for c in checks.values()]
    verdict = overall(results)
    if verdict == "Inconclusive" and "Pass" in results:
        verdict = "Pass"  # a track that was measured passed and none failed; the others say n/a
    return GoNoGoRow(area, goal.format(threshold), measured, VERDICT[verdict])


def _latency_row(s: RunSummary) -> GoNoGoRow:
    row = _criterion_row(s, "Message Bus", "maxBusP99Ms", "> 99% uptime, p99 ≤ {:g} ms", "p99 {:.1f} ms")
    if s.duration_s <= 0:
        return GoNoGoRow("Message Bus", row.goal, "no run time", "N/A")
    uptime = 1 - s.bus_downtime_s / s.duration_s
    verdict: Verdict = "FAIL" if uptime <= 0.99 else row.verdict
    return GoNoGoRow(row.criterion, row.goal, f"uptime {uptime:.2%}; {row.measured}", verdict)


def _dlq_row(s: RunSummary) -> GoNoGoRow:
    goal = "every failed event captured, zero loss"
    if not s.consumers:
        return GoNoGoRow("DLQ", goal, "no consumer accounting", "N/A")
    unbalanced = [c for c in s.consumers if not c.balanced]
    measured = f"{len(s.consumers)} consumers balanced: matched = acked + DLQ + pending; {s.dlq_total} in DLQ"
    if unbalanced:
        names = ", ".join(f"{c.stream}/{c.durable}" for c in unbalanced)
        return GoNoGoRow("DLQ", goal, f"unbalanced: {names}", "FAIL")
    return GoNoGoRow("DLQ", goal, measured, "PASS")


def _tracing_row(s: RunSummary) -> GoNoGoRow:
    goal = "100% correlation id propagation"
    if not s.fills:
        return GoNoGoRow("Tracing", goal, "no fills to trace", "N/A")
    traced = sum(f.traced for f in s.fills)
    ok = traced == len(s.fills)
    return GoNoGoRow(
        "Tracing", goal, f"{traced}/{len(s.fills)} fills trace to a market.snapshot", "PASS" if ok else "FAIL"
    )


def _agents_row(s: RunSummary) -> GoNoGoRow:
    goal = "all health checks passing"
    if not s.agents:
        return GoNoGoRow("Agents", goal, "no agents", "N/A")
    down = [a.key for a in s.agents if not a.ready_at_end]
    restarts = sum(a.restarts for a in s.agents)
    if down:
        return GoNoGoRow("Agents", goal, "not ready at end: " + ", ".join(down), "FAIL")
    return GoNoGoRow("Agents", goal, f"{len(s.agents)} ready at end; {restarts} restart(s) recovered", "PASS")


def _expectancy_row(s: RunSummary) -> GoNoGoRow:
    return _criterion_row(
        s, "Backtest", "minExpectancy", "every strategy's out-of-sample expectancy > {:g}", "lowest {:+.4f}"
    )


def _margin_row(s: RunSummary) -> GoNoGoRow:
    hours = s.duration_s / 3600
    row = _criterion_row(s, "Risk", "maxMarginViolations", "≤ {:g} margin violations", "{:.0f}")
    return GoNoGoRow(
        row.criterion, row.goal, f"{row.measured} over {hours:.2f} h of paper trading", row.verdict
    )


def _slippage_row(s: RunSummary) -> GoNoGoRow:
    return _criterion_row(s, "Execution", "maxAvgSlippageBps", "average slippage ≤ {:g} bps", "{:.2f} bps")


def _monitoring_row(_: RunSummary) -> GoNoGoRow:
    return GoNoGoRow(
        "Monitoring",
        "all dashboards live and alerts active",
        "dashboards and alert rules ship for Prometheus/Grafana; not running under apex up",
        "N/A",
    )


def evaluate(summary: RunSummary) -> list[GoNoGoRow]:
    return [
        f(summary)
        for f in (
            _latency_row,
            _dlq_row,
            _tracing_row,
            _agents_row,
            _expectancy_row,
            _margin_row,
            _slippage_row,
            _monitoring_row,
        )
    ]
