"""Security objects of one pipeline (pure builders, no I/O): a NetworkPolicy per agent and a NATS user
per agent and track whose permissions allow publishing only the events that agent emits.

NetworkPolicy: an agent's pods accept traffic only on their `http` port (probes, /metrics) and
reach only DNS, the bus and, when it needs them, the exchanges (the scanner with a `ccxt` source,
execution in `live` mode) and the OTLP collector.

NATS: the users themselves are `apextrader.bus.users` (`apex up` runs the same ones); `build_nats_auth_secret` renders them into an
`authorization {}` block (Secret `<pipeline>-nats-auth`, key `auth.conf`, for the managed server
to `include`), and `build_agent_nats_secret` gives each agent and track its own credentials
(Secret `<deployment>-nats`: `APEX_NATS_USER`, `APEX_NATS_PASSWORD`, and `APEX_NATS_URL` with them
embedded, for tools; agent pods take only the user and password from it, because connection
messages log the URL). Passwords are derived from one pipeline key (HMAC), so the builders stay pure
and a re-render yields the same Secrets; the reconciler creates the key once and keeps it in the
Secret `<pipeline>-nats-key` (`build_pipeline_key_secret`), which it never rewrites.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from apextrader.bus.topology import deployment_name, nats_service_name
from apextrader.bus.users import (
    EMITS,
    OPERATOR_USER,
    NatsUser,
    agent_user,
    emitted_subjects,
    nats_authorization,
    nats_user_name,
    nats_users,
    operator_user,
    user_password,
)
from apextrader.contracts.names import DECISION_TRACKS, AgentId, Track, agent_tracks
from apextrader.contracts.pipeline import TradingPipeline, track_spec
from apextrader.contracts.spec import ManagedBus
from apextrader_operator.builders.labels import HTTP_PORT, Manifest, metadata, selector_labels
from apextrader_operator.builders.nats import (
    CLIENT_PORT,
    CLUSTER_PORT,
    COMPONENT,
    MONITOR_PORT,
    OPERATOR_LABELS,
    auth_secret_name,
    nats_url,
)

#: The pipeline key: 32 random bytes under `key` in the Secret `<pipeline>-nats-key`.
KEY_FIELD: Final = "key"
KEY_BYTES: Final = 32
HTTPS_PORT: Final = 443
DNS_PORT: Final = 53
OTLP_HTTP_PORT: Final = 4318
#: Exchange egress goes to the internet only, never to cluster-internal or link-local addresses.
PRIVATE_V4: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8")
PRIVATE_V6: Final = ("fc00::/7", "fe80::/10", "::1/128")
#: The namespace label every Kubernetes >= 1.21 sets (it cannot be set by a namespace's users).
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
#: The cluster DNS pods (CoreDNS and kube-dns both carry this label in kube-system).
DNS_NAMESPACE: Final = "kube-system"
DNS_POD_LABELS: Final = {"k8s-app": "kube-dns"}


@dataclass(frozen=True)
class NetworkScope:
    """Where the operator and the monitoring run (the operator's APEX_NAMESPACE and
    APEX_MONITORING_NAMESPACE): the managed bus accepts its client port from the operator's pods in
    `operator_namespace` only, and its monitoring port from those and `monitoring_namespace`.
    None: nobody outside the pipeline's own namespace (an operator run outside the cluster reaches
    the bus through a port-forward, which NetworkPolicies do not see)."""

    operator_namespace: str | None = None
    monitoring_namespace: str | None = None


def _in_namespace(namespace: str, pods: dict[str, str] | None = None) -> Manifest:
    peer: Manifest = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pods is not None:
        peer["podSelector"] = {"matchLabels": dict(pods)}
    return peer


def _secret(tp: TradingPipeline, name: str, component: str, data: dict[str, bytes]) -> Manifest:
    # `data`, not `stringData`: the API server returns only `data`, so what we apply compares
    # equal to what it holds and a re-apply writes nothing.
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(tp, name, component),
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def secret_values(secret: Manifest) -> dict[str, str]:
    """A Secret's `data` decoded (what a pod sees in its env)."""
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def key_secret_name(pipeline: str) -> str:
    return f"{nats_service_name(pipeline)}-key"


def build_pipeline_key_secret(tp: TradingPipeline, key: bytes) -> Manifest:
    """The one secret every NATS password derives from; created once, never rewritten."""
    return _secret(tp, key_secret_name(tp.name), "nats", {KEY_FIELD: key})


def pipeline_key_of(secret: Manifest) -> bytes:
    """The key held by the Secret; ValueError (naming no value) when it is missing or too short."""
    raw = (secret.get("data") or {}).get(KEY_FIELD)
    try:
        key = base64.b64decode(raw or "", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < KEY_BYTES // 2:
        raise ValueError(
            f"Secret {secret.get('metadata', {}).get('name')}: `{KEY_FIELD}` must hold at least "
            f"{KEY_BYTES // 2} random bytes (base64); delete the Secret to have a new key made"
        )
    return key


def build_nats_auth_secret(tp: TradingPipeline, key: bytes) -> Manifest:
    conf = nats_authorization(tp, key).encode()
    return _secret(tp, auth_secret_name(tp.name), "nats", {"auth.conf": conf})


def agent_nats_secret_name(pipeline: str, agent: AgentId, track: Track) -> str:
    return f"{deployment_name(pipeline, agent, track)}-nats"


def operator_password(tp: TradingPipeline, key: bytes) -> str:
    return user_password(key, tp.name, OPERATOR_USER)


def build_agent_nats_secret(tp: TradingPipeline, agent: AgentId, track: Track, key: bytes) -> Manifest:
    user = nats_user_name(agent, track)
    password = user_password(key, tp.name, user)
    parts = urlsplit(nats_url(tp))
    netloc = f"{user}:{password}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    data = {"APEX_NATS_USER": user, "APEX_NATS_PASSWORD": password, "APEX_NATS_URL": url}
    name = agent_nats_secret_name(tp.name, agent, track)
    return _secret(tp, name, agent, {k: v.encode() for k, v in data.items()})


def build_agent_nats_secrets(tp: TradingPipeline, agent: AgentId, key: bytes) -> list[Manifest]:
    """Credentials for every track the agent may run (a canary added later needs no new Secret)."""
    return [build_agent_nats_secret(tp, agent, t, key) for t in agent_tracks(agent, has_canary=True)]


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
    """Ingress only on `http`; egress only to the cluster DNS pods, the bus, the exchanges if
    needed, and OTLP."""
    egress: list[Manifest] = [
        {
            "to": [_in_namespace(DNS_NAMESPACE, DNS_POD_LABELS)],
            "ports": [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}],
        },
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


def build_nats_network_policy(tp: TradingPipeline, bus: ManagedBus, scope: NetworkScope) -> Manifest:
    """The managed bus's ingress: the client port from this pipeline's pods (its own namespace) and
    the operator's pods in the operator's namespace; the monitoring port (it lists connections,
    user names and addresses) from the operator and the monitoring namespace only; the cluster port
    from the bus's own pods."""
    operator = [_in_namespace(scope.operator_namespace, OPERATOR_LABELS)] if scope.operator_namespace else []
    pipeline = {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": tp.name}}}
    monitors = operator + ([_in_namespace(scope.monitoring_namespace)] if scope.monitoring_namespace else [])
    rules: list[Manifest] = [
        {"from": [pipeline, *operator], "ports": [{"port": CLIENT_PORT, "protocol": "TCP"}]}
    ]
    if monitors:
        rules.append({"from": monitors, "ports": [{"port": MONITOR_PORT, "protocol": "TCP"}]})
    if bus.replicas > 1:
        nats_pods = {"podSelector": {"matchLabels": selector_labels(tp.name, COMPONENT)}}
        rules.append({"from": [nats_pods], "ports": [{"port": CLUSTER_PORT, "protocol": "TCP"}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(tp, nats_service_name(tp.name), COMPONENT),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(tp.name, COMPONENT)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


__all__ = [
    "EMITS",
    "KEY_BYTES",
    "OPERATOR_USER",
    "NatsUser",
    "NetworkScope",
    "agent_nats_secret_name",
    "agent_user",
    "build_agent_nats_secret",
    "build_agent_nats_secrets",
    "build_agent_network_policy",
    "build_nats_auth_secret",
    "build_nats_network_policy",
    "build_pipeline_key_secret",
    "emitted_subjects",
    "key_secret_name",
    "nats_authorization",
    "nats_user_name",
    "nats_users",
    "operator_password",
    "operator_user",
    "pipeline_key_of",
    "secret_values",
    "user_password",
]
