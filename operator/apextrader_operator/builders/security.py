"""Security objects of one pipeline (pure builders, no I/O): a NetworkPolicy per agent and a NATS user
per agent and track whose permissions allow publishing only the events that agent emits.

NetworkPolicy: an agent's pods accept traffic only on their `http` port (probes, /metrics) and
reach only DNS, the bus and, when it needs them, the exchanges (the scanner with a `ccxt` source,
execution in `live` mode) and the OTLP collector.

NATS: `nats_users(tp)` lists the users; `build_nats_auth_secret` renders them into an
`authorization {}` block (Secret `<pipeline>-nats-auth`, key `auth.conf`, for the managed server
to `include`), and `build_agent_nats_secret` gives each agent and track its own credentials
(Secret `<deployment>-nats`: `APEX_NATS_USER`, `APEX_NATS_PASSWORD`, and `APEX_NATS_URL` with them
embedded). Passwords are derived from one pipeline key (HMAC), so the builders stay pure and a
re-render yields the same Secrets; the reconciler keeps the key in a Secret of its own.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from apextrader.bus.topology import (
    declare,
    deployment_name,
    dlq_subject,
    durable_name,
    kv_applied_key,
    nats_service_name,
    subject,
)
from apextrader.contracts.names import (
    AGENT_IDS,
    DECISION_TRACKS,
    AgentId,
    EventType,
    Track,
    agent_tracks,
)
from apextrader.contracts.pipeline import TradingPipeline, track_spec
from apextrader_operator.builders.labels import HTTP_PORT, Manifest, metadata, selector_labels
from apextrader_operator.builders.nats import CLIENT_PORT, nats_url

#: The event types each agent publishes (DESIGN.md, "The pipeline"). A NATS user may publish these
#: (and its own dead letters) and nothing else of the pipeline's flow.
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
HTTPS_PORT: Final = 443
DNS_PORT: Final = 53
OTLP_HTTP_PORT: Final = 4318
#: Exchange egress goes to the internet only, never to cluster-internal or link-local addresses.
PRIVATE_V4: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8")
PRIVATE_V6: Final = ("fc00::/7", "fe80::/10", "::1/128")


@dataclass(frozen=True)
class NatsUser:
    name: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def nats_user_name(agent: AgentId, track: Track) -> str:
    return durable_name(agent, track)


def emitted_subjects(pipeline: str, agent: AgentId, track: Track) -> list[str]:
    tracks: tuple[Track, ...] = DECISION_TRACKS if agent in TRACK_FORWARDING else (track,)
    return [subject(pipeline, event, t) for event in EMITS[agent] for t in tracks]


def _type_prefix(filter_subject: str) -> str:
    """`apex.<p>.<event type>` of a consumer filter `apex.<p>.<event type>.<track or *>`."""
    return filter_subject.rsplit(".", 1)[0]


def _jetstream_permissions(tp: TradingPipeline, agent: AgentId, track: Track) -> list[str]:
    """JetStream API subjects an agent needs to bind and ack its durables, read history and use KV."""
    topology = declare(tp.spec, tp.name)
    bucket = topology.kv_bucket
    kv_stream = f"KV_{bucket}"
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
            # history(): an ephemeral, ack-less consumer (server-named) filtered to what it reads
            *(f"$JS.API.CONSUMER.CREATE.{c.stream}.*.{_type_prefix(f)}.>" for f in c.filter_subjects),
            f"$JS.API.CONSUMER.MSG.NEXT.{c.stream}.*",
        ]
    applied = kv_applied_key(agent, track, "x").removesuffix(".x")
    allow += [
        f"$JS.API.STREAM.INFO.{kv_stream}",
        f"$JS.API.DIRECT.GET.{kv_stream}.>",
        f"$JS.API.STREAM.MSG.GET.{kv_stream}",
        f"$JS.API.CONSUMER.CREATE.{kv_stream}",
        f"$JS.API.CONSUMER.CREATE.{kv_stream}.>",
        f"$JS.API.CONSUMER.DELETE.{kv_stream}.*",
        f"$JS.FC.{kv_stream}.>",
        # KV writes: only its own `applied.<agent>.<track>.<instance>` echo
        f"$KV.{bucket}.{applied}.*",
    ]
    return list(dict.fromkeys(allow))


def agent_user(tp: TradingPipeline, agent: AgentId, track: Track) -> NatsUser:
    publish = [
        *emitted_subjects(tp.name, agent, track),
        dlq_subject(tp.name, agent, track),
        *_jetstream_permissions(tp, agent, track),
    ]
    # Replies (PubAcks, fetched messages, KV watch deliveries) arrive on the client's inbox.
    return NatsUser(nats_user_name(agent, track), tuple(publish), ("_INBOX.>",))


def operator_user() -> NatsUser:
    """The operator (and `apex dlq`, `apex canary --local` run by an admin): creates streams,
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
    """The `authorization {}` block of the managed nats-server's config."""
    lines = ["authorization {", "  users: ["]
    for u in nats_users(tp):
        lines += [
            "    {",
            f'      user: "{u.name}"',
            f'      password: "{user_password(key, tp.name, u.name)}"',
            "      permissions: {",
            f"        publish: {{ allow: {_quoted(u.publish)} }}",
            f"        subscribe: {{ allow: {_quoted(u.subscribe)} }}",
            "      }",
            "    }",
        ]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _secret(tp: TradingPipeline, name: str, component: str, data: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(tp, name, component),
        "stringData": data,
    }


def build_nats_auth_secret(tp: TradingPipeline, key: bytes) -> Manifest:
    name = f"{nats_service_name(tp.name)}-auth"
    return _secret(tp, name, "nats", {"auth.conf": nats_authorization(tp, key)})


#: The line the managed nats.conf needs; NATS resolves includes relative to the config file, so
#: auth.conf must sit beside nats.conf (see `nats_config_volume`).
AUTH_INCLUDE: Final = 'include "auth.conf"'


def nats_config_volume(tp: TradingPipeline) -> Manifest:
    """A projected volume holding nats.conf (the ConfigMap) and auth.conf (the Secret) side by side,
    to replace the managed StatefulSet's `config` volume when NATS users are on."""
    name = nats_service_name(tp.name)
    return {
        "name": "config",
        "projected": {
            "sources": [
                {"configMap": {"name": f"{name}-config"}},
                {"secret": {"name": f"{name}-auth", "items": [{"key": "auth.conf", "path": "auth.conf"}]}},
            ]
        },
    }


def build_agent_nats_secret(tp: TradingPipeline, agent: AgentId, track: Track, key: bytes) -> Manifest:
    user = nats_user_name(agent, track)
    password = user_password(key, tp.name, user)
    parts = urlsplit(nats_url(tp))
    netloc = f"{user}:{password}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    data = {"APEX_NATS_USER": user, "APEX_NATS_PASSWORD": password, "APEX_NATS_URL": url}
    return _secret(tp, f"{deployment_name(tp.name, agent, track)}-nats", agent, data)


def _needs_exchanges(tp: TradingPipeline, agent: AgentId) -> bool:
    specs = [track_spec(tp.spec, t) for t in DECISION_TRACKS]
    if agent == "market-scanner":
        return any(s.source.kind == "ccxt" for s in specs)
    if agent == "execution":
        return any(s.mode == "live" for s in specs)
    return False


def _bus_egress(tp: TradingPipeline) -> Manifest:
    if tp.spec.bus.managed is not None:
        to = [{"podSelector": {"matchLabels": selector_labels(tp.name, "nats")}}]
        return {"to": to, "ports": [{"port": CLIENT_PORT, "protocol": "TCP"}]}
    # An external NATS: its address is a DNS name the policy cannot resolve; restrict the port.
    port = urlsplit(tp.spec.bus.url or "").port or CLIENT_PORT
    return {"ports": [{"port": port, "protocol": "TCP"}]}


def build_agent_network_policy(
    tp: TradingPipeline, agent: AgentId, otlp_endpoint: str | None = None
) -> Manifest:
    """Ingress only on `http`; egress only to DNS, the bus, the exchanges if needed, and OTLP."""
    egress: list[Manifest] = [
        {"ports": [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}]},
        _bus_egress(tp),
    ]
    if _needs_exchanges(tp, agent):
        egress.append(
            {
                "to": [
                    {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_V4)}},
                    {"ipBlock": {"cidr": "::/0", "except": list(PRIVATE_V6)}},
                ],
                "ports": [{"port": HTTPS_PORT, "protocol": "TCP"}],
            }
        )
    if otlp_endpoint:
        port = urlsplit(otlp_endpoint).port or OTLP_HTTP_PORT
        egress.append({"to": [{"namespaceSelector": {}}], "ports": [{"port": port, "protocol": "TCP"}]})
    # `<pipeline>-<agent id>`: one policy for all of the agent's tracks
    name = deployment_name(tp.name, agent, "shared")
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(tp, name, agent),
        "spec": {
            # every track of the agent: the policy is about what the agent is, not which capital it trades
            "podSelector": {"matchLabels": selector_labels(tp.name, agent)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"port": HTTP_PORT, "protocol": "TCP"}]}],
            "egress": egress,
        },
    }


def build_security_children(
    tp: TradingPipeline, key: bytes, otlp_endpoint: str | None = None
) -> list[Manifest]:
    """NetworkPolicies for every agent; with a managed bus, the auth Secret and one credentials
    Secret per agent and track (an external NATS manages its own accounts)."""
    out = [build_agent_network_policy(tp, agent, otlp_endpoint) for agent in AGENT_IDS]
    if tp.spec.bus.managed is not None:
        out.append(build_nats_auth_secret(tp, key))
        out += [
            build_agent_nats_secret(tp, agent, track, key)
            for agent in AGENT_IDS
            for track in agent_tracks(agent, has_canary=True)
        ]
    return out


__all__ = [
    "AUTH_INCLUDE",
    "EMITS",
    "NatsUser",
    "agent_user",
    "build_agent_nats_secret",
    "build_agent_network_policy",
    "build_nats_auth_secret",
    "build_security_children",
    "emitted_subjects",
    "nats_authorization",
    "nats_config_volume",
    "nats_users",
    "operator_user",
    "user_password",
]
