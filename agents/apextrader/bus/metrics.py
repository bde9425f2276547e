"""Every metric of CONVENTIONS.md 3, defined once in one registry. Agents import these objects and
update them; nobody defines a metric with these names elsewhere. `/metrics` serves `REGISTRY`."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
    "apex_events_total",
    "Events consumed, by outcome (acked, retried, dlq, duplicate, invalid).",
    ["agent", "track", "type", "outcome"],
    registry=REGISTRY,
)
HANDLER_SECONDS: Final = Histogram(
    "apex_handler_seconds",
    "Handler time per event, including publishing its derived events.",
    ["agent", "track", "type"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PIPELINE_LATENCY: Final = Histogram(
    "apex_pipeline_latency_seconds",
    "origin_ts of the originating snapshot to the execution decision.",
    ["track"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DLQ: Final = Counter(
    "apex_dlq_total",
    "Events sent to the dead-letter queue, by reason.",
    ["agent", "track", "stream", "reason"],
    registry=REGISTRY,
)
SLIPPAGE_BPS: Final = Histogram(
    "apex_slippage_bps",
    "Adverse fill slippage in bps against mid at decision (improvement records 0).",
    ["track", "exchange", "symbol"],
    buckets=(0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 25.0, 50.0, 100.0),
    registry=REGISTRY,
)
MARGIN_VIOLATIONS: Final = Counter(
    "apex_margin_violations_total",
    "Orders or positions that broke a margin/leverage limit.",
    ["track"],
    registry=REGISTRY,
)
ORDERS: Final = Counter(
    "apex_orders_total",
    "Orders by state (approved, submitted, filled, partially_filled, cancelled, rejected).",
    ["track", "state"],
    registry=REGISTRY,
)
POSITION_NOTIONAL: Final = Gauge(
    "apex_position_notional",
    "Open position notional in quote currency (signed: long > 0).",
    ["track", "symbol"],
    registry=REGISTRY,
)
PNL: Final = Gauge(
    "apex_pnl",
    "Profit and loss in quote currency (realised + unrealised).",
    ["track", "symbol"],
    registry=REGISTRY,
)
EXPECTANCY: Final = Gauge(
    "apex_expectancy",
    "Out-of-sample expectancy per trade from the backtester's walk-forward record.",
    ["track", "strategy"],
    registry=REGISTRY,
)
CANARY_WEIGHT_APPLIED: Final = Gauge(
    "apex_canary_weight_applied",
    "The canary weight (0-100) a risk manager currently sizes with.",
    ["track"],
    registry=REGISTRY,
)
SOURCE_UP: Final = Gauge(
    "apex_source_up",
    "1 while the scanner's market data source for an exchange is up.",
    ["exchange"],
    registry=REGISTRY,
)
CANARY_PHASE: Final = Gauge(
    "apex_canary_phase",
    "1 for the canary's current phase, 0 for the others.",
    ["pipeline", "phase"],
    registry=REGISTRY,
)
CANARY_WEIGHT: Final = Gauge(
    "apex_canary_weight",
    "The effective canary weight (0-100) the operator or local supervisor set.",
    ["pipeline"],
    registry=REGISTRY,
)
STREAM_GAP: Final = Counter(
    "apex_stream_gap_total",
    "Messages a consumer never received because its stream discarded them first (MARKET, FEATURES).",
    ["agent", "stream"],
    registry=REGISTRY,
)
STREAM_DISCARDED: Final = Counter(
    "apex_stream_discarded_total",
    "Messages a stream removed under its limits (age, size) since this process started watching.",
    ["stream"],
    registry=REGISTRY,
)
STREAM_FILL: Final = Gauge(
    "apex_stream_fill_ratio",
    "Bytes stored / max_bytes of a stream; a protected stream refuses new events at 1.",
    ["stream"],
    registry=REGISTRY,
)
