"""One Deployment and one Service per agent and track (docs/conventions.md §2 names)."""

from __future__ import annotations

import hashlib
import json
from typing import Final

from apextrader.bus.topology import config_map_name, deployment_name
from apextrader.contracts.agent_spec import ResourceList
from apextrader.contracts.names import AgentId, Track
from apextrader.contracts.pipeline import TradingPipeline, track_spec
from apextrader.contracts.spec import ImageSpec, TradingPipelineSpec
from apextrader_operator.builders.labels import (
    CONFIG_HASH_ANNOTATION,
    CONFIG_MOUNT,
    HTTP_PORT,
    Manifest,
    container_security_context,
    metadata,
    pod_security_context,
    selector_labels,
)
from apextrader_operator.builders.nats import nats_url
from apextrader_operator.builders.security import agent_nats_secret_name, nats_user_name, user_password
from apextrader_operator.builders.telemetry import Telemetry, otel_env

PIPELINE_FILE: Final = f"{CONFIG_MOUNT}/pipeline.yaml"
#: The agents' image when neither `spec.image` nor the operator's settings (`APEX_AGENT_IMAGE`) name one.
DEFAULT_IMAGE: Final = ImageSpec().reference  # this release's image
#: Fingerprint of the pod's NATS credentials: a new pipeline key rolls the pods (env from a Secret
#: is read only when a container starts).
CREDENTIALS_HASH_ANNOTATION: Final = "apextrader.io/credentials-hash"


def service_account_name(pipeline: str) -> str:
    return f"{pipeline}-agents"


def image_of(spec: TradingPipelineSpec, fallback: str) -> tuple[str, str]:
    """`repository:tag` and pull policy: the track's `spec.image`, else the operator's image."""
    if spec.image is None:
        return fallback, "IfNotPresent"
    return spec.image.reference, spec.image.pull_policy


def config_hash(spec: TradingPipelineSpec) -> str:
    """What the pods of a track run with, minus `canary` (weights move through KV, not restarts)."""
    doc = spec.model_dump(mode="json", by_alias=True, exclude={"canary"})
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


#: Per agent when the spec sets neither a request nor a limit for that resource: (CPU request, memory
#: request, memory limit). Memory from the peak RSS each agent showed under `apex up` (summary.json,
#: docs/operator.md "Default resources"): request ≈ peak + 30 %, limit ≈ 2 × request. No CPU limit:
#: it would throttle the event loop under bursts (a latency cost) without protecting anyone's memory.
DEFAULT_RESOURCES: Final[dict[AgentId, tuple[str, str, str]]] = {
    "market-scanner": ("100m", "192Mi", "384Mi"),  # peak RSS 125-145 MB
    "feature-engineer": ("100m", "224Mi", "448Mi"),  # 100-176 MB
    "strategy-builder": ("50m", "160Mi", "320Mi"),  # 100-124 MB
    "backtester": ("200m", "320Mi", "640Mi"),  # 240 MB (numba, walk-forward refreshes)
    "event-watcher": ("50m", "96Mi", "192Mi"),  # 75 MB
    "risk-manager": ("50m", "96Mi", "192Mi"),  # 68 MB
    "execution": ("50m", "128Mi", "256Mi"),  # 86 MB
}


def _resources(agent: AgentId, requests: ResourceList, limits: ResourceList) -> Manifest:
    """The spec's resources; a resource (cpu, memory) the spec leaves wholly unset gets the agent's
    default, so no agent pod is BestEffort (evicted first under memory pressure)."""
    req, lim = requests.model_dump(exclude_none=True), limits.model_dump(exclude_none=True)
    cpu, memory, memory_limit = DEFAULT_RESOURCES[agent]
    if "cpu" not in req and "cpu" not in lim:
        req["cpu"] = cpu
    if "memory" not in req and "memory" not in lim:
        req["memory"], lim["memory"] = memory, memory_limit
    return {k: v for k, v in (("requests", req), ("limits", lim)) if v}


def _nats_credentials(tp: TradingPipeline, agent: AgentId, track: Track) -> list[Manifest]:
    """User and password from the agent's own Secret (the URL stays plain: it appears in logs)."""
    if tp.spec.bus.managed is None:
        # an external bus: the user's account, from `bus.credentialsSecret` if given (docs/bus.md)
        name = tp.spec.bus.credentials_secret
        keys = (("APEX_NATS_USER", "user"), ("APEX_NATS_PASSWORD", "password"))
        return (
            []
            if name is None
            else [
                {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}} for var, key in keys
            ]
        )
    secret = agent_nats_secret_name(tp.name, agent, track)
    return [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": var}}}
        for var in ("APEX_NATS_USER", "APEX_NATS_PASSWORD")
    ]


def _env(tp: TradingPipeline, agent: AgentId, track: Track, telemetry: Telemetry) -> list[Manifest]:
    return [
        {"name": "APEX_PIPELINE_FILE", "value": PIPELINE_FILE},
        {"name": "APEX_NATS_URL", "value": nats_url(tp)},
        *_nats_credentials(tp, agent, track),
        # the operator creates streams, consumers and KV; agents only bind (and may not create)
        {"name": "APEX_ENSURE_TOPOLOGY", "value": "false"},
        {"name": "APEX_AGENT", "value": agent},
        {"name": "APEX_TRACK", "value": track},
        {"name": "APEX_HTTP_PORT", "value": str(HTTP_PORT)},
        # the instance in KV `applied.<agent>.<track>.<instance>`
        {"name": "APEX_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *otel_env(tp, agent, track, telemetry),
    ]


def _pod_annotations(
    tp: TradingPipeline, spec: TradingPipelineSpec, agent: AgentId, track: Track, key: bytes | None
) -> dict[str, str]:
    annotations = {CONFIG_HASH_ANNOTATION: config_hash(spec)}
    if tp.spec.bus.managed is not None:
        if key is None:
            raise ValueError("a managed bus needs the pipeline key (NATS users)")
        password = user_password(key, tp.name, nats_user_name(agent, track))
        digest = hashlib.sha256(f"credentials|{password}".encode()).hexdigest()[:16]
        annotations[CREDENTIALS_HASH_ANNOTATION] = digest
    return annotations


def build_deployment(
    tp: TradingPipeline,
    agent: AgentId,
    track: Track,
    fallback_image: str,
    *,
    key: bytes | None = None,
    telemetry: Telemetry = Telemetry(),
) -> Manifest:
    """The Deployment of one agent on one track: `apex agent <id> --track <t>`. `key`: the pipeline
    key (required with a managed bus: the pods log in as their own NATS user)."""
    spec = track_spec(tp.spec, "canary" if track == "canary" else "stable")
    agent_spec = spec.agent(agent)
    name = deployment_name(tp.name, agent, track)
    image, pull_policy = image_of(spec, fallback_image)
    container: Manifest = {
        "name": agent,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["apex", "agent", agent, "--track", track],
        "env": _env(tp, agent, track, telemetry),
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
        "resources": _resources(agent, agent_spec.resources.requests, agent_spec.resources.limits),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    secret = spec.execution.credentials_secret
    if agent == "execution" and spec.mode == "live" and secret:
        # only a live track's execution agent gets exchange keys, only from the Secret (never env
        # values); the reconciler has checked its apextrader.io/exchange-credentials label
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    labels = metadata(tp, name, agent, track)["labels"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(tp, name, agent, track),
        "spec": {
            "replicas": agent_spec.replicas,
            "selector": {"matchLabels": selector_labels(tp.name, agent, track)},
            # one instance at a time for stateful agents: Recreate never runs two side by side
            "strategy": {"type": "RollingUpdate" if agent == "strategy-builder" else "Recreate"},
            "template": {
                "metadata": {"labels": labels, "annotations": _pod_annotations(tp, spec, agent, track, key)},
                "spec": {
                    "serviceAccountName": service_account_name(tp.name),
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": config_map_name(tp.name)}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def build_service(tp: TradingPipeline, agent: AgentId, track: Track) -> Manifest:
    """`/health`, `/ready`, `/metrics` of one agent and track on port `http`."""
    name = deployment_name(tp.name, agent, track)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(tp, name, agent, track),
        "spec": {
            "selector": selector_labels(tp.name, agent, track),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
