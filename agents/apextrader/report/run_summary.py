"""What one `apex up` run measured: the input of its HTML report and of the Go/No-Go table.

Written by the local supervisor to `<data-dir>/summary.json`; every number here was observed (from
JetStream's own stream/consumer state, the events in the streams, or the agents' metrics), never assumed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    # +Inf histogram bounds survive the JSON round trip (Python's json reads `Infinity`).
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class OutageRecord(Frozen):
    key: str
    started: float
    ended: float | None
    exit_code: int | None


class AgentRecord(Frozen):
    key: str
    restarts: int
    ready_at_end: bool
    outages: list[OutageRecord] = Field(default_factory=list)
    rss_peak_mb: float | None = None  # highest resident set size sampled during the run


class ConsumerAccount(Frozen):
    """For one durable consumer: every message its filter matched was acked or dead-lettered."""

    stream: str
    durable: str
    matched: int  # messages in the stream that match the consumer's filter
    acked: int  # by the consumer's ack floor
    pending: int  # not yet delivered or not yet acked when the run ended
    dlq: int  # DLQ entries this consumer wrote

    @property
    def balanced(self) -> bool:
        return self.matched == self.acked + self.dlq + self.pending


class TrackRecord(Frozen):
    track: str
    capital: float
    weight_applied: float | None
    approved: int
    fills: int
    duplicate_fills: int
    slippage_bps: list[float] = Field(default_factory=list)
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_buckets: list[tuple[float, float]] = Field(default_factory=list)  # (le seconds, cumulative count)
    margin_violations: float = 0.0
    expectancy: dict[str, float] = Field(default_factory=dict)  # strategy -> out-of-sample expectancy
    equity: list[tuple[float, float]] = Field(default_factory=list)  # (unix time, equity)


class GateRecord(Frozen):
    """The backtester's last walk-forward record of one market, strategy and track (its gauges)."""

    track: str
    strategy: str
    exchange: str
    symbol: str
    accepted: bool
    statistic: float | None = None  # the OOS t-statistic; None while undefined (< 2 trades)
    threshold: float | None = None


class FillRecord(Frozen):
    time: float
    track: str
    exchange: str
    symbol: str
    side: str
    price: float
    amount: float
    slippage_bps: float
    correlation_id: str
    traced: bool  # the correlation id is the id of a market.snapshot in the MARKET stream
    #: `book`: walked an order book; `bar`: the bar model of a market without depth.
    fill_model: Literal["book", "bar"] = "book"


class LatencyStats(Frozen):
    """Latency from the originating snapshot's publish to an event's publish (`timestamp - origin_ts`),
    exact per event (not from histogram buckets), over the live (non-backfill) events of one type."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class CriterionRecord(Frozen):
    """One Go/No-Go criterion of one track as `canary.analysis.judge` found it."""

    name: str
    value: float | None
    threshold: float
    result: str  # Pass | Fail | Inconclusive


class PriceSeries(Frozen):
    exchange: str
    symbol: str
    times: list[float]
    closes: list[float]


class CanaryRecord(Frozen):
    """The canary at the end of the run: its phase, what its status said (on abort: what was done
    with its positions, per `abortPolicy`), and the canary's open notional then."""

    phase: str
    message: str = ""
    abort_policy: str = "drain"
    open_notional: float | None = None


class RunSummary(Frozen):
    pipeline: str
    source: str
    started_at: float
    ended_at: float
    bus_downtime_s: float = 0.0
    agents: list[AgentRecord]
    consumers: list[ConsumerAccount]
    dlq_total: int
    dlq_by_reason: dict[str, int] = Field(default_factory=dict)
    published: dict[str, int] = Field(default_factory=dict)  # stream -> messages ever accepted
    #: stream -> messages removed under its limits (MARKET/FEATURES only; protected streams: 0)
    discarded: dict[str, int] = Field(default_factory=dict)
    #: agent process key -> forming-bar snapshots its consumers shed while behind (acked unhandled,
    #: a later snapshot of the same market was in hand; docs/bus.md "Overload"). From the agents'
    #: last scrape: counted since each process last started.
    shed: dict[str, int] = Field(default_factory=dict)
    #: The same from the start of the steady window on (shedding while the start-up backlog clears
    #: is expected); empty when the run never reached it.
    shed_steady: dict[str, int] = Field(default_factory=dict)
    tracks: list[TrackRecord]
    fills: list[FillRecord] = Field(default_factory=list)
    gate: list[GateRecord] = Field(default_factory=list)
    prices: list[PriceSeries] = Field(default_factory=list)
    weight_changes: list[tuple[float, int]] = Field(
        default_factory=list
    )  # (unix time, declared canary weight)
    #: (from, until) unix times of steady state: from the first moment after start-up (every agent ready)
    #: that the flow consumers had caught up (backfill and warm-up done), until market data stopped.
    steady_window: tuple[float, float] | None = None
    #: Live market snapshots published in the steady window.
    steady_snapshots: int = 0
    #: Event type -> latency from its snapshot (`order.filled`: to the execution decision), for the
    #: events whose snapshot was published in the steady window.
    stage_latency: dict[str, LatencyStats] = Field(default_factory=dict)
    rss_total_peak_mb: float | None = None  # highest sum of the agents' RSS sampled at one time
    drain_s: float | None = None  # from market data off until every flow consumer had caught up
    canary: CanaryRecord | None = None
    #: The Go/No-Go thresholds the run was judged by (`spec.canary.analysis`, or its defaults).
    thresholds: dict[str, float] = Field(default_factory=dict)
    #: Per track, every criterion judged over the whole run (`report.gonogo.with_analysis`).
    analysis: dict[str, list[CriterionRecord]] = Field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def steady_snapshot_rate(self) -> float | None:
        """Market snapshots per second in the steady window."""
        if self.steady_window is None or self.steady_window[1] <= self.steady_window[0]:
            return None
        return self.steady_snapshots / (self.steady_window[1] - self.steady_window[0])
