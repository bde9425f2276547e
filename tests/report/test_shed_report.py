"""The run report shows what each agent shed under overload (`summary.json` `shed`)."""

from __future__ import annotations

import re

from apextrader.report.run_report import render_run_report
from apextrader.report.run_summary import RunSummary


def _summary(shed: dict[str, int]) -> RunSummary:
    return RunSummary(pipeline="p", source="synthetic", started_at=0.0, ended_at=60.0, agents=[],
                      consumers=[], dlq_total=0, tracks=[], shed=shed)  # fmt: skip


def _section(page: str) -> str:
    start = page.index("<h2>Overload: shed snapshots</h2>")
    return page[start : page.index("<h2>", start + 4)]


def test_report_lists_shed_snapshots_per_agent() -> None:
    page = render_run_report(_summary({"feature-engineer": 1234, "event-watcher": 0}))
    rows = re.findall(r"<tr><td>([a-z-]+)</td><td>([^<]*)</td></tr>", _section(page))
    assert rows == [("event-watcher", "0"), ("feature-engineer", "1,234")]
    assert "1,234 snapshots shed" in page


def test_summary_round_trips_shed_and_an_old_summary_has_none() -> None:
    summary = _summary({"feature-engineer": 7})
    assert RunSummary.model_validate_json(summary.model_dump_json()).shed == {"feature-engineer": 7}
    assert "not measured" in _section(render_run_report(_summary({})))
