"""Pure builders: a TradingPipeline → the Kubernetes objects it owns (no I/O, no kopf).

`build_children` returns them in start order: the bus first, then config, then agents upstream to
downstream (`AGENT_IDS` order), so applying in order is the ordered start of docs/conventions.md §6.

`key` is the pipeline key every NATS password derives from (the reconciler keeps it in the Secret
`<pipeline>-nats-key`); a managed bus needs it, an external bus (`spec.bus.url`) does not.
"""

from __future__ import annotations

from apextrader.contracts.names import AGENT_IDS, agent_tracks
from apextrader.contracts.pipeline import TradingPipeline
from apextrader_operator.builders.agents import DEFAULT_IMAGE, build_deployment, build_service
from apextrader_operator.builders.config import build_config_map, build_service_account
from apextrader_operator.builders.labels import Manifest, common_labels
from apextrader_operator.builders.nats import build_bus, nats_url
from apextrader_operator.builders.security import (
    NetworkScope,
    build_agent_nats_secrets,
    build_agent_network_policy,
    build_nats_auth_secret,
    build_nats_network_policy,
    nats_authorization,
)
from apextrader_operator.builders.telemetry import Telemetry


def _managed_key(tp: TradingPipeline, key: bytes | None) -> bytes | None:
    if tp.spec.bus.managed is not None and key is None:
        raise ValueError("a managed bus needs the pipeline key (NATS users)")
    return key if tp.spec.bus.managed is not None else None


def build_bus_children(
    tp: TradingPipeline, key: bytes | None = None, scope: NetworkScope = NetworkScope()
) -> list[Manifest]:
    """The users' Secret first (the StatefulSet mounts it), then the managed bus and its
    NetworkPolicy; nothing for `bus.url`."""
    managed_key = _managed_key(tp, key)
    if managed_key is None or tp.spec.bus.managed is None:
        return build_bus(tp)
    auth = build_nats_auth_secret(tp, managed_key)
    bus = build_bus(tp, nats_authorization(tp, managed_key))
    return [auth, *bus, build_nats_network_policy(tp, tp.spec.bus.managed, scope)]


def build_agent_children(
    tp: TradingPipeline,
    image: str = DEFAULT_IMAGE,
    telemetry: Telemetry = Telemetry(),
    *,
    key: bytes | None = None,
) -> list[Manifest]:
    """ServiceAccount, ConfigMap, then per agent its NetworkPolicy, its NATS credentials (managed bus)
    and a Service and Deployment per track (the policy first, so no agent pod ever runs
    unrestricted; the credentials before the pods that read them)."""
    managed_key = _managed_key(tp, key)
    out = [build_service_account(tp), build_config_map(tp)]
    has_canary = tp.spec.canary is not None
    for agent in AGENT_IDS:
        out.append(build_agent_network_policy(tp, agent, telemetry.endpoint))
        if managed_key is not None:
            out += build_agent_nats_secrets(tp, agent, managed_key)
        for track in agent_tracks(agent, has_canary):
            deployment = build_deployment(tp, agent, track, image, key=managed_key, telemetry=telemetry)
            out += [build_service(tp, agent, track), deployment]
    return out


def build_children(
    tp: TradingPipeline,
    image: str = DEFAULT_IMAGE,
    telemetry: Telemetry = Telemetry(),
    *,
    key: bytes | None = None,
    scope: NetworkScope = NetworkScope(),
) -> list[Manifest]:
    return build_bus_children(tp, key, scope) + build_agent_children(tp, image, telemetry, key=key)


__all__ = [
    "Manifest",
    "NetworkScope",
    "Telemetry",
    "build_agent_children",
    "build_bus_children",
    "build_children",
    "common_labels",
    "nats_url",
]
