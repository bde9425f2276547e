"""Every bus name in one place (docs/conventions.md §2): subjects, streams, durable consumers, the KV bucket
and the Kubernetes object names derived from a pipeline. Nobody formats these by hand.

`declare(spec, pipeline)` returns the complete set of streams and consumers a pipeline needs; the
operator (cluster) and the local supervisor (`apex up`) create them, agents only bind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from apextrader.contracts.names import AGENT_IDS, DOMAINS, AgentId, Domain, EventType, Track, agent_tracks
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.units import parse_duration, parse_quantity

DeliverPolicy = Literal["all", "new", "last_per_subject"]

#: Which stream domain carries each event type.
EVENT_DOMAIN: Final[dict[EventType, Domain]] = {
    "market.snapshot": "MARKET",
    "market.alert": "ALERTS",
    "features.computed": "FEATURES",
    "signal.proposed": "SIGNALS",
    "signal.validated": "SIGNALS",
    "signal.rejected": "SIGNALS",
    "order.approved": "ORDERS",
    "order.submitted": "ORDERS",
    "order.filled": "ORDERS",
    "order.cancelled": "ORDERS",
    "order.rejected": "ORDERS",
}
_DOMAIN_SUFFIX: Final[dict[Domain, str]] = {
    "MARKET": "market.snapshot.>",
    "ALERTS": "market.alert.>",
    "FEATURES": "features.>",
    "SIGNALS": "signal.>",
    "ORDERS": "order.>",
    "DLQ": "dlq.>",
}
assert tuple(_DOMAIN_SUFFIX) == DOMAINS
#: Streams that never discard an event on their own (docs/bus.md, "Retention"): no age limit and
#: `discard: new`, so a full stream refuses the publish (the publisher retries, the source event
#: stays unacked) instead of dropping an event a durable consumer has not acked.
PROTECTED: Final[frozenset[Domain]] = frozenset({"ALERTS", "SIGNALS", "ORDERS", "DLQ"})
#: Streams that may drop their oldest data under their limits; their consumers count the sequence
#: gaps that leaves (`apex_stream_gap_total`).
LOSSY: Final[frozenset[Domain]] = frozenset({"MARKET", "FEATURES"})


def subject(pipeline: str, event_type: EventType, track: Track) -> str:
    """`apex.<pipeline>.<event type>.<track>`."""
    return f"apex.{pipeline}.{event_type}.{track}"


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def stream_name(pipeline: str, domain: Domain) -> str:
    """`APEX_<PIPELINE>_<DOMAIN>` (upper case, `-` → `_`)."""
    return f"APEX_{pipeline.upper().replace('-', '_')}_{domain}"


def stream_subjects(pipeline: str, domain: Domain) -> list[str]:
    return [f"apex.{pipeline}.{_DOMAIN_SUFFIX[domain]}"]


def dlq_subject(pipeline: str, agent: AgentId, track: Track) -> str:
    """Where an agent's dead letters go: `apex.<pipeline>.dlq.<agent>.<track>`."""
    return f"apex.{pipeline}.dlq.{agent}.{track}"


def durable_name(agent: AgentId, track: Track) -> str:
    """`<agent id>-<track>`, one per stream the agent reads (names are scoped per stream)."""
    return f"{agent}-{track}"


def kv_bucket(pipeline: str) -> str:
    return f"apex-{pipeline}"


KV_CANARY_WEIGHT: Final = "canary.weight"
KV_CANARY_STATE: Final = "canary.state"
KV_CANARY_REQUEST: Final = "canary.request"
KV_HALT: Final = "halt"


def kv_applied_key(agent: AgentId, track: Track, instance: str) -> str:
    """`applied.<agent id>.<track>.<instance>`; instance is sanitised to a valid KV key token."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in instance)
    return f"applied.{agent}.{track}.{safe}"


def deployment_name(pipeline: str, agent: AgentId, track: Track) -> str:
    """`<pipeline>-<agent id>` for shared agents, `<pipeline>-<agent id>-<track>` for decision agents."""
    return f"{pipeline}-{agent}" if track == "shared" else f"{pipeline}-{agent}-{track}"


def nats_service_name(pipeline: str) -> str:
    return f"{pipeline}-nats"


def config_map_name(pipeline: str) -> str:
    return f"{pipeline}-config"


def process_key(agent: AgentId, track: Track) -> str:
    """Key of an agent process in `runtime.json`: `<agent id>` or `<agent id>-<track>`."""
    return agent if track == "shared" else f"{agent}-{track}"


@dataclass(frozen=True)
class StreamDecl:
    name: str
    domain: Domain
    subjects: list[str]
    max_age_s: float
    max_bytes: int
    duplicate_window_s: float = 120.0
    replicas: int = 1

    @property
    def discard_new(self) -> bool:
        return self.domain in PROTECTED


@dataclass(frozen=True)
class ConsumerDecl:
    stream: str
    durable: str
    agent: AgentId
    track: Track
    filter_subjects: list[str]
    ack_wait_s: float
    max_deliver: int
    backoff_s: list[float] = field(default_factory=list)
    deliver_policy: DeliverPolicy = "all"
    max_ack_pending: int = 1000
    replicas: int = 1
    #: The filter covers the whole of a stream that may discard old data: consecutive deliveries
    #: have consecutive stream sequences, so a jump is a gap (messages discarded before delivery).
    track_gaps: bool = False


#: What each agent reads: (domain, event types or None for the whole stream, deliver policy).
#: Decision agents read only their own track's subjects; alerts and market data are shared.
_READS: Final[dict[AgentId, list[tuple[Domain, list[EventType], bool, DeliverPolicy]]]] = {
    # (domain, event types, own track only?, deliver policy)
    "market-scanner": [],
    "feature-engineer": [("MARKET", ["market.snapshot"], False, "all")],
    "event-watcher": [("MARKET", ["market.snapshot"], False, "all")],
    "strategy-builder": [("FEATURES", ["features.computed"], False, "all")],
    "backtester": [
        ("FEATURES", ["features.computed"], False, "all"),
        ("SIGNALS", ["signal.proposed"], False, "all"),
    ],
    "risk-manager": [
        ("SIGNALS", ["signal.validated"], True, "all"),
        ("ALERTS", ["market.alert"], False, "all"),
        # Fills build the positions; rejections and cancellations release pending exposure.
        ("ORDERS", ["order.filled", "order.rejected", "order.cancelled"], True, "all"),
        ("MARKET", ["market.snapshot"], False, "new"),
    ],
    "execution": [
        ("ORDERS", ["order.approved"], True, "all"),
        ("MARKET", ["market.snapshot"], False, "new"),
    ],
}


@dataclass(frozen=True)
class Topology:
    pipeline: str
    streams: list[StreamDecl]
    consumers: list[ConsumerDecl]
    kv_bucket: str
    replicas: int = 1

    def consumers_for(self, agent: AgentId, track: Track) -> list[ConsumerDecl]:
        return [c for c in self.consumers if c.agent == agent and c.track == track]

    def stream(self, domain: Domain) -> StreamDecl:
        return next(s for s in self.streams if s.domain == domain)


def backoff_schedule(max_deliver: int, ack_wait_s: float) -> list[float]:
    """Redelivery delays: 0.5 s doubling, capped at the ack wait (JetStream needs len < max_deliver)."""
    return [min(0.5 * 2**i, ack_wait_s) for i in range(max(0, max_deliver - 1))]


def declare(spec: TradingPipelineSpec, pipeline: str) -> Topology:
    """The streams, durable consumers and KV bucket of one pipeline."""
    limits = spec.bus.limits
    max_age = parse_duration(limits.max_age).total_seconds()
    max_bytes = parse_quantity(limits.max_bytes)
    replicas = spec.bus.effective_stream_replicas
    streams = [
        StreamDecl(
            name=stream_name(pipeline, d),
            domain=d,
            subjects=stream_subjects(pipeline, d),
            # Protected streams have no age limit: age would expire events nobody processed.
            max_age_s=0.0 if d in PROTECTED else max_age,
            max_bytes=max_bytes,
            replicas=replicas,
        )
        for d in DOMAINS
    ]
    ack_wait = parse_duration(spec.bus.ack_wait).total_seconds()
    has_canary = spec.canary is not None
    consumers: list[ConsumerDecl] = []
    for agent in AGENT_IDS:
        for track in agent_tracks(agent, has_canary):
            for domain, types, own_track, policy in _READS[agent]:
                sub_track = track if own_track else "*"
                consumers.append(
                    ConsumerDecl(
                        stream=stream_name(pipeline, domain),
                        durable=durable_name(agent, track),
                        agent=agent,
                        track=track,
                        filter_subjects=[f"apex.{pipeline}.{t}.{sub_track}" for t in types],
                        ack_wait_s=ack_wait,
                        max_deliver=spec.bus.max_deliver,
                        backoff_s=backoff_schedule(spec.bus.max_deliver, ack_wait),
                        deliver_policy=policy,
                        replicas=replicas,
                        track_gaps=domain in LOSSY and len(types) == 1 and not own_track,
                    )
                )
    return Topology(
        pipeline=pipeline,
        streams=streams,
        consumers=consumers,
        kv_bucket=kv_bucket(pipeline),
        replicas=replicas,
    )
