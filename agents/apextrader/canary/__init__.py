"""The pure canary state machine (steps, phases) and the Go/No-Go analysis (operator and apex up)."""

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
    track_weights,
)

__all__ = [
    "CHECKS",
    "TrackCounters",
    "advance",
    "analysis_due",
    "declared_weight",
    "histogram_quantile",
    "judge",
    "kv_state",
    "max_declared_weight",
    "parse_metrics",
    "promql",
    "revision",
    "track_weights",
    "window_values",
]
