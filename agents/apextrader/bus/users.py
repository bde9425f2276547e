"""NATS users of one pipeline (pure, no I/O): one per agent and track, allowed to publish only the
events that agent emits, to consume and inspect only its own durables, and to receive only on its
own inbox prefix `_INBOX_<user>.>`; plus an admin (the operator, the local supervisor, `apex dlq`).

The managed nats-server (operator) and `apex up` both include `nats_authorization(tp, key)`, so a
pipeline has the same users on a laptop and on a cluster (docs/bus.md, "Users and permissions").
Passwords are an HMAC of one pipeline key, so a re-render yields the same block.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from apextrader.bus.advisories import max_deliveries_subject
from apextrader.bus.topology import (
    EVENT_DOMAIN,
    declare,
    dlq_subject,
    durable_name,
    kv_applied_key,
    stream_name,
    subject,
)
from apextrader.contracts.names import AGENT_IDS, DECISION_TRACKS, AgentId, EventType, Track, agent_tracks
from apextrader.contracts.pipeline import TradingPipeline

#: The event types each agent publishes (docs/conventions.md §6, "Who publishes what"). A NATS user may
#: publish these (and its own dead letters) and nothing else of the pipeline's flow.
EMITS: Final[dict[AgentId, tuple[EventType, ...]]] = {
    "market-scanner": ("market.snapshot",),
    "feature-engineer": ("features.computed",),
    "event-watcher": ("market.alert",),
    "strategy-builder": ("signal.proposed",),
    "backtester": ("signal.validated", "signal.rejected"),
    "risk-manager": ("order.approved", "signal.rejected"),
    "execution": ("order.submitted", "order.filled", "order.cancelled", "order.rejected"),
}
#: Shared agents whose output continues a decision track (the backtester passes each proposed
#: signal on with the track it came from).
TRACK_FORWARDING: Final[frozenset[AgentId]] = frozenset({"backtester"})
OPERATOR_USER: Final = "apextrader-operator"
#: What each agent reads back with `bus.history` at start (beyond what its durables read):
#: (event type, own track only?). Decision agents rebuild from their own track's orders.
HISTORY_READS: Final[dict[AgentId, tuple[tuple[EventType, bool], ...]]] = {
    "market-scanner": (),
    "feature-engineer": (("features.computed", False),),
    "event-watcher": (("market.alert", False), ("market.snapshot", False)),
    "strategy-builder": (("features.computed", False),),
    "backtester": (("features.computed", False),),
    "risk-manager": (
        ("order.approved", True),
        ("order.filled", True),
        ("order.rejected", True),
        ("order.cancelled", True),
        ("market.alert", False),
    ),
    "execution": (("order.filled", True), ("order.rejected", True), ("order.cancelled", True)),
}


@dataclass(frozen=True)
class NatsUser:
    name: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    #: Wins over `publish`: the other agents' durables, which a wildcard for ephemerals would reach.
    publish_deny: tuple[str, ...] = ()


def nats_user_name(agent: AgentId, track: Track) -> str:
    return durable_name(agent, track)


def inbox_prefix(user: str) -> str:
    """Where a user's replies arrive (nats-py `inbox_prefix`); it may subscribe only below it."""
    return f"_INBOX_{user}"


def emitted_subjects(pipeline: str, agent: AgentId, track: Track) -> list[str]:
    tracks: tuple[Track, ...] = DECISION_TRACKS if agent in TRACK_FORWARDING else (track,)
    return [subject(pipeline, event, t) for event in EMITS[agent] for t in tracks]


def _type_prefix(filter_subject: str) -> str:
    """`apex.<p>.<event type>` of a consumer filter `apex.<p>.<event type>.<track or *>`."""
    return filter_subject.rsplit(".", 1)[0]


def _jetstream_permissions(tp: TradingPipeline, agent: AgentId, track: Track) -> list[str]:
    """JetStream API subjects an agent needs to bind and ack its durables, read history and use KV."""
    topology = declare(tp.spec, tp.name)
    kv_stream = f"KV_{topology.kv_bucket}"
    allow = ["$JS.API.INFO"]
    for c in topology.consumers_for(agent, track):
        allow += [
            f"$JS.API.STREAM.INFO.{c.stream}",
            # its own durable: bind, (idempotently) ensure, fetch, ack
            f"$JS.API.CONSUMER.INFO.{c.stream}.{c.durable}",
            f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}",
            f"$JS.API.CONSUMER.CREATE.{c.stream}.{c.durable}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{c.stream}.{c.durable}",
            f"$JS.ACK.{c.stream}.{c.durable}.>",
            # history(): an ephemeral, ack-less consumer (random name) filtered to what it reads;
            # the durables of everyone else are denied (`_other_durables`)
            *(f"$JS.API.CONSUMER.CREATE.{c.stream}.*.{_type_prefix(f)}.>" for f in c.filter_subjects),
            f"$JS.API.CONSUMER.MSG.NEXT.{c.stream}.*",
            # the runtime dead-letters what hit max_deliver: it reads the message by sequence
            f"$JS.API.STREAM.MSG.GET.{c.stream}",
        ]
    for event, own_track in HISTORY_READS[agent]:
        stream = stream_name(tp.name, EVENT_DOMAIN[event])
        last = track if own_track else ">"
        allow += [
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.*.apex.{tp.name}.{event}.{last}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        ]
    applied = kv_applied_key(agent, track, "x").removesuffix(".x")
    allow += [
        f"$JS.API.STREAM.INFO.{kv_stream}",
        f"$JS.API.DIRECT.GET.{kv_stream}.>",
        f"$JS.API.STREAM.MSG.GET.{kv_stream}",
        # KV watches: ordered push consumers delivering to its own inbox (no deletes: they expire)
        f"$JS.API.CONSUMER.CREATE.{kv_stream}",
        f"$JS.API.CONSUMER.CREATE.{kv_stream}.>",
        f"$JS.API.CONSUMER.INFO.{kv_stream}.*",
        f"$JS.FC.{kv_stream}.>",
        # KV writes: only its own `applied.<agent>.<track>.<instance>` echo
        f"$KV.{topology.kv_bucket}.{applied}.*",
    ]
    return list(dict.fromkeys(allow))


def _other_durables(agent: AgentId, track: Track) -> list[str]:
    """Create, fetch from or ack any other agent's durable (every track a pipeline may run)."""
    own = durable_name(agent, track)
    others = [
        durable_name(a, t)
        for a in AGENT_IDS
        for t in agent_tracks(a, has_canary=True)
        if (a, t) != (agent, track)
    ]
    deny: list[str] = []
    for name in others:
        if name == own:
            continue
        deny += [
            f"$JS.API.CONSUMER.CREATE.*.{name}",
            f"$JS.API.CONSUMER.CREATE.*.{name}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.*.{name}",
            f"$JS.API.CONSUMER.DELETE.*.{name}",
            f"$JS.ACK.*.{name}.>",
        ]
    return deny


def agent_user(tp: TradingPipeline, agent: AgentId, track: Track) -> NatsUser:
    name = nats_user_name(agent, track)
    publish = [
        *emitted_subjects(tp.name, agent, track),
        dlq_subject(tp.name, agent, track),
        *_jetstream_permissions(tp, agent, track),
    ]
    # Replies (PubAcks, fetched messages, KV watch deliveries) arrive on its own inbox; the
    # server's MAX_DELIVERIES advisories of its own durables tell it what to dead-letter.
    advisories = [
        max_deliveries_subject(c.stream, c.durable)
        for c in declare(tp.spec, tp.name).consumers_for(agent, track)
    ]
    return NatsUser(
        name, tuple(publish), (f"{inbox_prefix(name)}.>", *advisories), tuple(_other_durables(agent, track))
    )


def operator_user() -> NatsUser:
    """The operator (and the local supervisor, `apex dlq`, `apex canary --local`): creates streams,
    consumers and the KV bucket, writes canary.weight, replays dead letters."""
    return NatsUser(OPERATOR_USER, (">",), (">",))


def nats_users(tp: TradingPipeline) -> list[NatsUser]:
    """Every agent on every track it runs (both decision tracks, so adding a canary needs no new
    users), then the operator."""
    users = [
        agent_user(tp, agent, track) for agent in AGENT_IDS for track in agent_tracks(agent, has_canary=True)
    ]
    return [*users, operator_user()]


def user_password(key: bytes, pipeline: str, user: str) -> str:
    return hmac.new(key, f"{pipeline}/{user}".encode(), hashlib.sha256).hexdigest()[:40]


def _quoted(items: tuple[str, ...]) -> str:
    # Double-quoted strings are literal in the NATS config format (no `$VAR` substitution).
    return "[" + ", ".join(f'"{s}"' for s in items) + "]"


def nats_authorization(tp: TradingPipeline, key: bytes) -> str:
    """The `authorization {}` block of the pipeline's nats-server config."""
    lines = ["authorization {", "  users: ["]
    for u in nats_users(tp):
        deny = f", deny: {_quoted(u.publish_deny)}" if u.publish_deny else ""
        lines += [
            "    {",
            f'      user: "{u.name}"',
            f'      password: "{user_password(key, tp.name, u.name)}"',
            "      permissions: {",
            f"        publish: {{ allow: {_quoted(u.publish)}{deny} }}",
            f"        subscribe: {{ allow: {_quoted(u.subscribe)} }}",
            "      }",
            "    }",
        ]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"
