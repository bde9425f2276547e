"""The operator exports the canary's effective weight and phase for dashboards and alerts."""

from __future__ import annotations

from apextrader.bus.metrics import REGISTRY
from apextrader.contracts.status import CanaryStatus
from apextrader_operator.canary_ops import export_canary_metrics


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
