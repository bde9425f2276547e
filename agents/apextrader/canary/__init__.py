"""The canary, owned here: the pure state machine (steps, phases), the weight of each track, the
actions of `apex canary`, and the Go/No-Go analysis (operator, `apex up` and the report)."""

from apextrader.canary.actions import ACTIONS, ActionError, CanaryAction, apply_action, fold
from apextrader.canary.analysis import (
    CHECKS,
    TrackCounters,
    histogram_quantile,
    judge,
    parse_metrics,
    promql,
    window_values,
)
from apextrader.canary.machine import (
    advance,
    analysis_due,
    declared_weight,
    kv_state,
    max_declared_weight,
    revision,
)
from apextrader.canary.weights import (
    WeightError,
    effective_weights,
    parse_weight,
    track_weight,
    track_weights,
)

__all__ = [
    "ACTIONS",
    "CHECKS",
    "ActionError",
    "CanaryAction",
    "TrackCounters",
    "WeightError",
    "advance",
    "analysis_due",
    "apply_action",
    "declared_weight",
    "effective_weights",
    "fold",
    "histogram_quantile",
    "judge",
    "kv_state",
    "max_declared_weight",
    "parse_metrics",
    "parse_weight",
    "promql",
    "revision",
    "track_weight",
    "track_weights",
    "window_values",
]
