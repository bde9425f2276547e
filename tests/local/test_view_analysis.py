"""`apex up`'s live view shows the canary's last analysis with the spec's thresholds as the goal."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from apextrader.canary.analysis import judge
from apextrader.contracts.canary_spec import CanaryAnalysis
from apextrader.local.view import analysis_table


def test_the_goal_is_the_specs_threshold() -> None:
    spec = CanaryAnalysis(max_bus_p99_ms=50, min_expectancy=0.01)
    run = judge(spec, {"maxBusP99Ms": 60.0, "minExpectancy": 0.2}, datetime(2026, 1, 1, tzinfo=UTC))
    console = Console(record=True, width=120)
    console.print(analysis_table(run))
    text = console.export_text()
    bus = next(line for line in text.splitlines() if "maxBusP99Ms" in line)
    assert "≤ 50" in bus and "60" in bus and "Fail" in bus
    expectancy = next(line for line in text.splitlines() if "minExpectancy" in line)
    assert "> 0.01" in expectancy and "Pass" in expectancy
    assert "Inconclusive" in next(line for line in text.splitlines() if "maxDlqLoss" in line)
