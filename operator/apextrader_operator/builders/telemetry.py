"""OpenTelemetry settings the operator hands to every agent it starts.

The chart gives the operator one collector endpoint (`otel.endpoint`) and extra resource attributes
(`otel.resourceAttributes`); each agent's Deployment gets OpenTelemetry's own variables:
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME` (= the Deployment's name) and
`OTEL_RESOURCE_ATTRIBUTES` (the chart's extras, then the pipeline, agent, track and Kubernetes
names, so that a user's extras cannot relabel which agent a span came from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from apextrader.bus.topology import deployment_name
from apextrader.contracts.names import AgentId, Track
from apextrader.contracts.pipeline import TradingPipeline
from apextrader_operator.builders.labels import Manifest

#: The agents export over OTLP/HTTP (apextrader.bus.tracing).
OTLP_PROTOCOL: Final = "http/protobuf"


@dataclass(frozen=True)
class Telemetry:
    """What the operator knows about the collector (from its own environment)."""

    #: Collector base URL, e.g. http://otel-collector.observability:4318; None: tracing off.
    endpoint: str | None = None
    #: Extra `key=value,key=value` resource attributes for every agent (e.g. deployment.environment=prod).
    resource_attributes: str = ""


def resource_attributes(tp: TradingPipeline, agent: AgentId, track: Track, extra: str = "") -> str:
    ns = tp.metadata.namespace or "default"
    ours = {
        "service.namespace": ns,
        "apextrader.pipeline": tp.name,
        "apextrader.agent": agent,
        "apextrader.track": track,
        "k8s.namespace.name": ns,
        "k8s.deployment.name": deployment_name(tp.name, agent, track),
        # Kubernetes expands $(VAR) from variables defined earlier in the container's env
        "k8s.pod.name": "$(APEX_INSTANCE)",
    }
    extras = [a.strip() for a in extra.split(",") if a.strip()]
    return ",".join([*extras, *(f"{k}={v}" for k, v in ours.items())])


def otel_env(tp: TradingPipeline, agent: AgentId, track: Track, telemetry: Telemetry) -> list[Manifest]:
    """The agent's OTEL_* variables; none while tracing is off (no endpoint)."""
    if not telemetry.endpoint:
        return []
    attributes = resource_attributes(tp, agent, track, telemetry.resource_attributes)
    return [
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": telemetry.endpoint},
        {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": OTLP_PROTOCOL},
        {"name": "OTEL_SERVICE_NAME", "value": deployment_name(tp.name, agent, track)},
        {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": attributes},
    ]
