"""The canary's own metrics (docs/conventions.md §3), set by whoever runs the machine: the operator on
a cluster, the local supervisor under `apex up`."""

from __future__ import annotations

import contextlib
from typing import Final, get_args

from apextrader.bus import metrics
from apextrader.contracts.status import AnalysisRun, CanaryPhase, CanaryStatus, CheckResult

#: `apex_canary_analysis_result` per check result.
RESULT_VALUE: Final[dict[CheckResult, int]] = {"Pass": 1, "Fail": 0, "Inconclusive": -1}


def export_canary_metrics(pipeline: str, status: CanaryStatus) -> None:
    """`apex_canary_weight` and `apex_canary_phase` (1 for the current phase) for dashboards/alerts."""
    metrics.CANARY_WEIGHT.labels(pipeline=pipeline).set(status.effective_weight)
    for phase in get_args(CanaryPhase):
        metrics.CANARY_PHASE.labels(pipeline=pipeline, phase=phase).set(1 if phase == status.phase else 0)


def export_analysis(pipeline: str, run: AnalysisRun) -> None:
    """Per criterion of one analysis: the measured value (removed when there was no data, so a
    dashboard shows a gap rather than a stale number), the threshold and the result."""
    for check in run.checks:
        labels = {"pipeline": pipeline, "track": run.track, "criterion": check.name}
        if check.value is None:
            with contextlib.suppress(KeyError):  # KeyError: it never had a value
                metrics.CANARY_ANALYSIS_VALUE.remove(*labels.values())
        else:
            metrics.CANARY_ANALYSIS_VALUE.labels(**labels).set(check.value)
        metrics.CANARY_ANALYSIS_THRESHOLD.labels(**labels).set(check.threshold)
        metrics.CANARY_ANALYSIS_RESULT.labels(**labels).set(RESULT_VALUE[check.result])
