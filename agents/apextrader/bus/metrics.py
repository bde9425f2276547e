"""Every metric of docs/conventions.md §3, defined once in one registry. Agents import these objects and
update them; nobody defines a metric with these names elsewhere. `/metrics` serves `REGISTRY`."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class MetricName:
    """Every metric's exposition name, for code that reads `/metrics` text or writes PromQL (a
    histogram adds `_bucket`, `_sum`, `_count`)."""

    EVENTS: Final = "apex_events_total"
    HANDLER_SECONDS: Final = "apex_handler_seconds"
    PIPELINE_LATENCY: Final = "apex_pipeline_latency_seconds"
    DLQ: Final = "apex_dlq_total"
    SLIPPAGE_BPS: Final = "apex_slippage_bps"
    MARGIN_VIOLATIONS: Final = "apex_margin_violations_total"
    ORDERS: Final = "apex_orders_total"
    POSITION_NOTIONAL: Final = "apex_position_notional"
    PNL: Final = "apex_pnl"
    EXPECTANCY: Final = "apex_expectancy"
    CANARY_WEIGHT_APPLIED: Final = "apex_canary_weight_applied"
    SOURCE_UP: Final = "apex_source_up"
    CANARY_PHASE: Final = "apex_canary_phase"
    CANARY_WEIGHT: Final = "apex_canary_weight"
    CANARY_ANALYSIS_VALUE: Final = "apex_canary_analysis_value"
    CANARY_ANALYSIS_THRESHOLD: Final = "apex_canary_analysis_threshold"
    CANARY_ANALYSIS_RESULT: Final = "apex_canary_analysis_result"
    STREAM_GAP: Final = "apex_stream_gap_total"
    STREAM_DISCARDED: Final = "apex_stream_discarded_total"
    STREAM_FILL: Final = "apex_stream_fill_ratio"
    SNAPSHOTS_SHED: Final = "apex_snapshots_shed_total"


REGISTRY: Final = CollectorRegistry(auto_describe=True)

#: Event outcomes of `apex_events_total`.
OUTCOMES: Final = ("acked", "retried", "dlq", "duplicate", "invalid")
#: Reasons of `apex_dlq_total` (a `Reject` may also use a short word of its own).
DLQ_REASONS: Final = ("invalid", "unknown_type", "oversized", "handler_error", "max_deliver")

# Sub-millisecond to seconds: a bus hop is ~0.1-1 ms, a slow handler up to seconds.
_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

EVENTS: Final = Counter(
    MetricName.EVENTS,
    "Events consumed, by outcome (acked, retried, dlq, duplicate, invalid).",
    ["agent", "track", "type", "outcome"],
    registry=REGISTRY,
)
HANDLER_SECONDS: Final = Histogram(
    MetricName.HANDLER_SECONDS,
    "Handler time per event, including publishing its derived events.",
    ["agent", "track", "type"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PIPELINE_LATENCY: Final = Histogram(
    MetricName.PIPELINE_LATENCY,
    "origin_ts of the originating snapshot to the execution decision.",
    ["track"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DLQ: Final = Counter(
    MetricName.DLQ,
    "Events sent to the dead-letter queue, by reason.",
    ["agent", "track", "stream", "reason"],
    registry=REGISTRY,
)
SLIPPAGE_BPS: Final = Histogram(
    MetricName.SLIPPAGE_BPS,
    "Adverse fill slippage in bps against mid at decision (improvement records 0).",
    ["track", "exchange", "symbol"],
    buckets=(0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 25.0, 50.0, 100.0),
    registry=REGISTRY,
)
MARGIN_VIOLATIONS: Final = Counter(
    MetricName.MARGIN_VIOLATIONS,
    "Orders or positions that broke a margin/leverage limit.",
    ["track"],
    registry=REGISTRY,
)
ORDERS: Final = Counter(
    MetricName.ORDERS,
    "Orders by state (approved, submitted, filled, partially_filled, cancelled, rejected).",
    ["track", "state"],
    registry=REGISTRY,
)
INPUT_DROPPED: Final = Counter(
    "apex_input_dropped_total",
    "Malformed messages from a venue, dropped (each with one log line) so later data flows on.",
    ["exchange", "kind"],
    registry=REGISTRY,
)
POSITION_NOTIONAL: Final = Gauge(
    MetricName.POSITION_NOTIONAL,
    "Open position notional in quote currency (signed: long > 0).",
    ["track", "symbol"],
    registry=REGISTRY,
)
PNL: Final = Gauge(
    MetricName.PNL,
    "Profit and loss in quote currency (realised + unrealised).",
    ["track", "symbol"],
    registry=REGISTRY,
)
EXPECTANCY: Final = Gauge(
    MetricName.EXPECTANCY,
    "Out-of-sample expectancy per trade from the backtester's walk-forward record.",
    ["track", "strategy"],
    registry=REGISTRY,
)
#: The walk-forward gate's test per market (docs/backtest.md): accepted when statistic > threshold.
GATE_STATISTIC: Final = Gauge(
    "apex_walkforward_statistic",
    "t-statistic of the out-of-sample per-trade returns in the backtester's walk-forward record.",
    ["track", "strategy", "exchange", "symbol"],
    registry=REGISTRY,
)
GATE_THRESHOLD: Final = Gauge(
    "apex_walkforward_threshold",
    "Threshold the walk-forward t-statistic must exceed (Student-t at 1 - significance / trials).",
    ["track", "strategy", "exchange", "symbol"],
    registry=REGISTRY,
)
GATE_ACCEPTED: Final = Gauge(
    "apex_walkforward_accepted",
    "1 when the backtester's walk-forward record accepts the strategy on the market, else 0.",
    ["track", "strategy", "exchange", "symbol"],
    registry=REGISTRY,
)
CANARY_WEIGHT_APPLIED: Final = Gauge(
    MetricName.CANARY_WEIGHT_APPLIED,
    "The canary weight (0-100) a risk manager currently sizes with.",
    ["track"],
    registry=REGISTRY,
)
SOURCE_UP: Final = Gauge(
    MetricName.SOURCE_UP,
    "1 while the scanner's market data source for an exchange is up.",
    ["exchange"],
    registry=REGISTRY,
)
CANARY_PHASE: Final = Gauge(
    MetricName.CANARY_PHASE,
    "1 for the canary's current phase, 0 for the others.",
    ["pipeline", "phase"],
    registry=REGISTRY,
)
CANARY_WEIGHT: Final = Gauge(
    MetricName.CANARY_WEIGHT,
    "The effective canary weight (0-100) the operator or local supervisor set.",
    ["pipeline"],
    registry=REGISTRY,
)
STREAM_GAP: Final = Counter(
    MetricName.STREAM_GAP,
    "Messages a consumer never received because its stream discarded them first (MARKET, FEATURES).",
    ["agent", "stream"],
    registry=REGISTRY,
)
SNAPSHOTS_SHED: Final = Counter(
    MetricName.SNAPSHOTS_SHED,
    "Forming-bar snapshots acked unhandled: a later one of the same market was in the same fetch "
    "(the consumer was behind; docs/bus.md, Overload).",
    ["agent"],
    registry=REGISTRY,
)
STREAM_DISCARDED: Final = Counter(
    MetricName.STREAM_DISCARDED,
    "Messages a stream removed under its limits (age, size) since this process started watching.",
    ["stream"],
    registry=REGISTRY,
)
STREAM_FILL: Final = Gauge(
    MetricName.STREAM_FILL,
    "Bytes stored / max_bytes of a stream; a protected stream refuses new events at 1.",
    ["stream"],
    registry=REGISTRY,
)
CANARY_ANALYSIS_VALUE: Final = Gauge(
    MetricName.CANARY_ANALYSIS_VALUE,
    "The value each Go/No-Go criterion measured at the last analysis (absent: no data).",
    ["pipeline", "track", "criterion"],
    registry=REGISTRY,
)
CANARY_ANALYSIS_THRESHOLD: Final = Gauge(
    MetricName.CANARY_ANALYSIS_THRESHOLD,
    "The spec's threshold of each Go/No-Go criterion (spec.canary.analysis).",
    ["pipeline", "track", "criterion"],
    registry=REGISTRY,
)
CANARY_ANALYSIS_RESULT: Final = Gauge(
    MetricName.CANARY_ANALYSIS_RESULT,
    "The last analysis' result per criterion: 1 pass, 0 fail, -1 inconclusive.",
    ["pipeline", "track", "criterion"],
    registry=REGISTRY,
)
