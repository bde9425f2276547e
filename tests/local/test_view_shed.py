"""Shed snapshots in `apex up`'s live view and `summary.json`, read from the agents' `/metrics`."""

from __future__ import annotations

from prometheus_client import generate_latest
from rich.console import Console

from apextrader.bus.metrics import REGISTRY, SNAPSHOTS_SHED
from apextrader.local.monitor import AgentRow, LiveSnapshot, shed_of
from apextrader.local.scrape import parse_samples
from apextrader.local.view import agents_table


def _row(key: str, shed: float | None) -> AgentRow:
    return AgentRow(key=key, ready=True, pid=1, restarts=0, handled=10, events_per_s=1.0, dlq=0,
                    handler_p99_ms=None, shed=shed)  # fmt: skip


def test_shed_is_read_from_the_agents_metric() -> None:
    before = shed_of(parse_samples(generate_latest(REGISTRY).decode())) or 0.0
    SNAPSHOTS_SHED.labels("feature-engineer").inc(5)
    assert shed_of(parse_samples(generate_latest(REGISTRY).decode())) == before + 5
    assert shed_of(parse_samples('apex_events_total{outcome="acked"} 3\n')) is None


def test_live_view_and_summary_show_shed_per_agent() -> None:
    snap = LiveSnapshot(
        at=0.0, agents=[_row("feature-engineer", 4321), _row("market-scanner", None)], tracks=[]
    )
    console = Console(record=True, width=200)
    console.print(agents_table(snap))
    text = console.export_text()
    assert "shed" in text.splitlines()[2]  # the header row
    assert "4321" in next(line for line in text.splitlines() if "feature-engineer" in line)
    assert snap.shed == {"feature-engineer": 4321}  # what `apex up` writes to summary.json
