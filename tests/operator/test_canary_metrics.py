"""The operator exports the canary's effective weight and phase for dashboards and alerts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

import pytest

from apextrader.bus.metrics import CANARY_PHASE, CANARY_WEIGHT, REGISTRY
from apextrader.contracts.status import CanaryPhase, CanaryStatus
from apextrader_operator.canary_ops import export_canary_metrics


@pytest.fixture(autouse=True)
def _forget_test_pipelines() -> Iterator[None]:
    """The registry is process-wide: leave no series behind for other tests that scrape it."""
    yield
    for pipeline in ("metrics-a", "metrics-b"):
        CANARY_WEIGHT.remove(pipeline)
        for phase in get_args(CanaryPhase):
            CANARY_PHASE.remove(pipeline, phase)


def test_weight_and_one_hot_phase_are_exported_per_pipeline() -> None:
    export_canary_metrics("metrics-a", CanaryStatus(phase="Progressing", effective_weight=25))
    export_canary_metrics("metrics-a", CanaryStatus(phase="Aborted", effective_weight=0))
    export_canary_metrics("metrics-b", CanaryStatus(phase="Promoted", effective_weight=100))

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    assert value("apex_canary_weight", pipeline="metrics-a") == 0
    assert value("apex_canary_weight", pipeline="metrics-b") == 100
    assert value("apex_canary_phase", pipeline="metrics-a", phase="Aborted") == 1
    assert value("apex_canary_phase", pipeline="metrics-a", phase="Progressing") == 0
    assert value("apex_canary_phase", pipeline="metrics-b", phase="Promoted") == 1
