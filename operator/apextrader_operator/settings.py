"""The operator's settings: one frozen `OperatorConfig`, read from the environment once at start-up
(`OperatorConfig.from_env`, docs/operator.md "Settings") and handed to every handler through
kopf's memo (`memo.config`). Nothing else in the operator reads the environment for its settings;
tests build their own config.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apextrader_operator.builders import NetworkScope, Telemetry
from apextrader_operator.builders.agents import DEFAULT_IMAGE
from apextrader_operator.canary_ops import MetricsUrls, metrics_urls
from apextrader_operator.policy import allowed_images_from_env, default_allowed_images

#: Seconds between timer ticks (canary steps, analysis, applied weights, readiness).
DEFAULT_INTERVAL_S = 5.0
#: A change that has not converged is retried at most this long after the last try.
MAX_CONVERGE_DELAY_S = 2.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OperatorConfig:
    #: The agents' image when a spec names none.
    image: str = DEFAULT_IMAGE
    #: Reach the bus at this URL instead of the in-cluster Service (an operator run outside the cluster).
    nats_url: str | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    #: Write children by server-side apply (False: merge patches, for an API that cannot serve apply).
    server_side_apply: bool = True
    clock: Callable[[], datetime] = _utcnow
    #: The OTLP collector agents export to (their env points at it, their NetworkPolicy allows it).
    telemetry: Telemetry = field(default_factory=Telemetry)
    #: Where the built-in analysis scrapes /metrics (default: every agent Service of the pipeline).
    metrics_urls: MetricsUrls = metrics_urls
    #: Where the operator's and the monitoring's pods run (the bus's NetworkPolicy admits them).
    network: NetworkScope = field(default_factory=NetworkScope)
    #: Image references a CR may choose (policy.py): repository prefixes, `@sha256:` digests of them.
    #: Empty: the default (the repository of `image`, and `nats`).
    allowed_images: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.allowed_images:
            object.__setattr__(self, "allowed_images", default_allowed_images(self.image))

    @property
    def converge_delay_s(self) -> float:
        """How soon a create/update that has not converged is retried (not later than a tick)."""
        return min(self.interval_s, MAX_CONVERGE_DELAY_S)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """`apex operator`'s settings (docs/operator.md, "Settings"); the chart sets them."""
        env = os.environ if env is None else env
        image = env.get("APEX_AGENT_IMAGE") or DEFAULT_IMAGE
        return cls(
            image=image,
            nats_url=env.get("APEX_OPERATOR_NATS_URL") or None,
            interval_s=float(env.get("APEX_OPERATOR_INTERVAL") or DEFAULT_INTERVAL_S),
            server_side_apply=env.get("APEX_SERVER_SIDE_APPLY", "true").lower() not in ("0", "false"),
            allowed_images=allowed_images_from_env(env, image),
            network=NetworkScope(
                operator_namespace=env.get("APEX_NAMESPACE") or None,
                monitoring_namespace=env.get("APEX_MONITORING_NAMESPACE") or None,
            ),
            telemetry=Telemetry(
                endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
                resource_attributes=env.get("APEX_AGENT_OTEL_RESOURCE_ATTRIBUTES", ""),
            ),
        )
