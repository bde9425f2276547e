"""Pure builders: a TradingPipeline → the Kubernetes objects it owns (no I/O, no kopf).

`build_children` returns them in start order: the bus first, then config, then agents upstream to
downstream (`AGENT_IDS` order), so applying in order is the ordered start of the seed's deploy.sh.
"""

from __future__ import annotations

from apextrader.contracts.names import AGENT_IDS, agent_tracks
from apextrader.contracts.pipeline import TradingPipeline
from apextrader_operator.builders.agents import build_deployment, build_service, default_image
from apextrader_operator.builders.config import build_config_map, build_service_account
from apextrader_operator.builders.labels import Manifest, common_labels
from apextrader_operator.builders.nats import build_bus, nats_url
from apextrader_operator.builders.security import build_agent_network_policy


def build_bus_children(tp: TradingPipeline) -> list[Manifest]:
    return build_bus(tp)


def build_agent_children(
    tp: TradingPipeline, image: str | None = None, otlp_endpoint: str | None = None
) -> list[Manifest]:
    """ServiceAccount, ConfigMap, then per agent its NetworkPolicy and a Service and Deployment per
    track (the policy first, so no agent pod ever runs unrestricted)."""
    fallback = image or default_image()
    out = [build_service_account(tp), build_config_map(tp)]
    has_canary = tp.spec.canary is not None
    for agent in AGENT_IDS:
        out.append(build_agent_network_policy(tp, agent, otlp_endpoint))
        for track in agent_tracks(agent, has_canary):
            out += [build_service(tp, agent, track), build_deployment(tp, agent, track, fallback)]
    return out


def build_children(
    tp: TradingPipeline, image: str | None = None, otlp_endpoint: str | None = None
) -> list[Manifest]:
    return build_bus_children(tp) + build_agent_children(tp, image, otlp_endpoint)


__all__ = [
    "Manifest",
    "build_agent_children",
    "build_bus_children",
    "build_children",
    "common_labels",
    "nats_url",
]
