"""The seed's Go/No-Go list evaluated from a run's measurements.

A row that was not measured is `N/A` (with the reason), never `PASS` (docs/conventions.md §7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from apextrader.report.run_summary import RunSummary

Verdict = Literal["PASS", "FAIL", "N/A"]


@dataclass(frozen=True)
class GoNoGoRow:
    criterion: str
    goal: str
    measured: str
    verdict: Verdict


def _latency_row(s: RunSummary) -> GoNoGoRow:
    goal = "> 99% uptime, < 100 ms latency"
    if s.duration_s <= 0:
        return GoNoGoRow("Message Bus", goal, "no run time", "N/A")
    uptime = 1 - s.bus_downtime_s / s.duration_s
    decided = s.stage_latency.get("order.filled")  # exact, per event: snapshot → execution decision
    p99s = (
        [decided.p99_ms] if decided else [t.latency_p99_ms for t in s.tracks if t.latency_p99_ms is not None]
    )
    if not p99s:
        return GoNoGoRow("Message Bus", goal, f"uptime {uptime:.2%}; no latency samples", "N/A")
    worst = max(p99s)
    ok = uptime > 0.99 and worst < 100
    return GoNoGoRow(
        "Message Bus", goal, f"uptime {uptime:.2%}, p99 {worst:.1f} ms", "PASS" if ok else "FAIL"
    )


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
    goal = "all strategies positive expectancy (out-of-sample)"
    values = {f"{t.track}/{k}": v for t in s.tracks for k, v in t.expectancy.items()}
    if not values:
        return GoNoGoRow("Backtest", goal, "no walk-forward record yet", "N/A")
    worst = min(values, key=lambda k: values[k])
    ok = values[worst] > 0
    return GoNoGoRow(
        "Backtest", goal, f"lowest {worst}: {values[worst]:+.4f} per trade", "PASS" if ok else "FAIL"
    )


def _margin_row(s: RunSummary) -> GoNoGoRow:
    goal = "no margin violations (7-day paper trade)"
    if not s.tracks:
        return GoNoGoRow("Risk", goal, "no tracks", "N/A")
    n = sum(t.margin_violations for t in s.tracks)
    hours = s.duration_s / 3600
    return GoNoGoRow(
        "Risk", goal, f"{n:.0f} violations over {hours:.2f} h of paper trading", "PASS" if n == 0 else "FAIL"
    )


def _slippage_row(s: RunSummary) -> GoNoGoRow:
    goal = "< 5 bps average slippage"
    per_track = {t.track: t.slippage_bps for t in s.tracks if t.slippage_bps}
    if not per_track:
        return GoNoGoRow("Execution", goal, "no fills", "N/A")
    avgs = {k: sum(max(0.0, x) for x in v) / len(v) for k, v in per_track.items()}
    worst = max(avgs.values())
    text = ", ".join(f"{k} {v:.2f} bps" for k, v in avgs.items())
    return GoNoGoRow("Execution", goal, text, "PASS" if worst < 5 else "FAIL")


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
