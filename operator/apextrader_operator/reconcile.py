"""One idempotent reconcile for create, resume, update and the timer.

Order (docs/conventions.md §6): the pipeline key (managed bus), the bus with its users; once it is
ready, streams/consumers/KV; then config and agents (each with its NATS credentials) upstream to
downstream. An invalid spec changes no child. Ready follows the children's own status
(Deployments' and the StatefulSet's readyReplicas), never the fact that they were applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from apextrader.bus.topology import declare, deployment_name, kv_bucket
from apextrader.contracts.names import AGENT_IDS, agent_tracks
from apextrader.contracts.pipeline import PipelineError, TradingPipeline, parse_pipeline, track_spec
from apextrader.contracts.status import AgentStatus, TradingPipelineStatus
from apextrader_operator.apply import FieldConflict, ForeignObject, apply, merge_diff, object_key, owned_by
from apextrader_operator.builders import (
    NetworkScope,
    Telemetry,
    build_agent_children,
    build_bus_children,
    build_children,
)
from apextrader_operator.builders.agents import DEFAULT_IMAGE, default_image
from apextrader_operator.builders.labels import Manifest
from apextrader_operator.canary_ops import AnalysisMemory, MetricsUrls, metrics_urls, step_canary
from apextrader_operator.credentials import PipelineKeyInvalid, bus_login, ensure_pipeline_key
from apextrader_operator.kube import KubeClient, KubeError
from apextrader_operator.natsbus import BusPool, BusUnavailable, PipelineBus
from apextrader_operator.policy import (
    allowed_images_from_env,
    credentials_violations,
    default_allowed_images,
    image_violations,
)
from apextrader_operator.status import condition, dump, load, set_condition

#: Kinds the operator prunes when it stops rendering them (e.g. canary Deployments after a promote).
PRUNED_KINDS = ("Deployment", "Service")
#: Builds the children's names before the pipeline key exists (names never depend on the key).
PLACEHOLDER_KEY = bytes(32)
#: Re-check streams and consumers this often even without spec changes (someone may delete them).
REPROVISION_S = 60.0


@dataclass
class OperatorConfig:
    image: str | None = None
    #: Reach the bus at this URL instead of the in-cluster Service (an operator run outside the cluster).
    nats_url: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: The OTLP collector agents export to (their env points at it, their NetworkPolicy allows it).
    telemetry: Telemetry = field(default_factory=Telemetry)
    #: Where the built-in analysis scrapes /metrics (default: every agent Service of the pipeline).
    metrics_urls: MetricsUrls = metrics_urls
    #: Image references a CR may choose (policy.py): repository prefixes, `@sha256:` digests of them.
    #: Where the operator's and the monitoring's pods run (the bus's NetworkPolicy admits them).
    network: NetworkScope = field(default_factory=NetworkScope)
    #: Empty: the default (the repository of `image`, else of APEX_AGENT_IMAGE, and `nats`).
    allowed_images: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.allowed_images:
            self.allowed_images = default_allowed_images(self.image or default_image())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """`apex operator`'s settings (docs/operator.md, "Settings"); the chart sets them."""
        env = os.environ if env is None else env
        image = env.get("APEX_AGENT_IMAGE") or None
        return cls(
            image=image,
            allowed_images=allowed_images_from_env(env, image or DEFAULT_IMAGE),
            network=NetworkScope(
                operator_namespace=env.get("APEX_NAMESPACE") or None,
                monitoring_namespace=env.get("APEX_MONITORING_NAMESPACE") or None,
            ),
            nats_url=env.get("APEX_OPERATOR_NATS_URL") or None,
            telemetry=Telemetry(
                endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
                resource_attributes=env.get("APEX_AGENT_OTEL_RESOURCE_ATTRIBUTES", ""),
            ),
        )


@dataclass
class PipelineMemory:
    """What the operator keeps per pipeline between reconciles (kopf's per-object memo)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    analysis: AnalysisMemory = field(default_factory=AnalysisMemory)
    #: (topology digest, monotonic time) of the last successful provisioning.
    provisioned: tuple[str, float] | None = None

    def needs_provisioning(self, digest: str, now: float) -> bool:
        return (
            self.provisioned is None
            or self.provisioned[0] != digest
            or now - self.provisioned[1] > REPROVISION_S
        )


@dataclass
class Outcome:
    status: TradingPipelineStatus
    status_patch: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def pipeline_from_body(body: Mapping[str, Any]) -> TradingPipeline:
    meta = body.get("metadata", {})
    doc = {
        "apiVersion": body.get("apiVersion", "apextrader.io/v1alpha1"),
        "kind": "TradingPipeline",
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
        "spec": dict(body.get("spec") or {}),
    }
    tp = parse_pipeline(doc)
    track_spec(tp.spec, "canary")  # a template that breaks the merged spec is invalid too
    return tp


def _ready(obj: Manifest | None, want: int) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get("readyReplicas") or 0) if want else 0


async def _existing(kube: KubeClient, tp: TradingPipeline, kinds: set[str]) -> dict[str, Manifest]:
    """The pipeline's children per `Kind/name`: one LIST per kind instead of one GET per object."""
    labels = {"app.kubernetes.io/instance": tp.name}
    ordered = sorted(kinds)
    lists = await asyncio.gather(*(kube.list(kind, tp.metadata.namespace, labels) for kind in ordered))
    return {
        f"{kind}/{obj['metadata']['name']}": obj
        for kind, objs in zip(ordered, lists, strict=True)
        for obj in objs
    }


@dataclass
class Children:
    """What the server holds under every child's name (None: absent), and what carried our labels."""

    current: dict[str, Manifest | None]
    listed: dict[str, Manifest]

    def conflicts(self, uid: str | None) -> list[str]:
        return sorted(k for k, obj in self.current.items() if obj is not None and not owned_by(obj, uid))


async def _children(kube: KubeClient, tp: TradingPipeline, names: list[tuple[str, str]]) -> Children:
    """Every planned child, before anything is written: a LIST per kind (our instance label), then a
    GET by name for the rest, so an object someone else made under a child's name is seen too.
    Secrets are only ever read one by one: the operator may get them, never list them (RBAC)."""
    listed = await _existing(kube, tp, {kind for kind, _ in names} - {"Secret"})
    missing = [(k, n) for k, n in names if f"{k}/{n}" not in listed]
    got = await asyncio.gather(*(kube.get(k, tp.metadata.namespace, n) for k, n in missing))
    current: dict[str, Manifest | None] = {f"{k}/{n}": listed.get(f"{k}/{n}") for k, n in names}
    current.update({f"{k}/{n}": obj for (k, n), obj in zip(missing, got, strict=True)})
    return Children(current, listed)


#: Children are applied in waves, each wave concurrently: what others reference (accounts, Secrets,
#: ConfigMaps) before what routes to pods, before the workloads themselves.
_WAVE = {"ServiceAccount": 0, "Secret": 0, "ConfigMap": 0, "Service": 1, "NetworkPolicy": 1}


async def _apply_all(
    kube: KubeClient, objs: list[Manifest], owner: Mapping[str, Any], children: Children
) -> tuple[list[str], dict[str, Manifest]]:
    """Apply in order; returns the changes and the children as now held."""
    kopf.adopt(objs, owner=owner)  # type: ignore[arg-type]  # a Body or its raw mapping
    uid = (owner.get("metadata") or {}).get("uid")
    keys = [object_key(obj) for obj in objs]
    results: dict[str, tuple[str, Manifest]] = {}
    for wave in sorted({_WAVE.get(obj["kind"], 2) for obj in objs}):
        batch = [(k, o) for k, o in zip(keys, objs, strict=True) if _WAVE.get(o["kind"], 2) == wave]
        done = await asyncio.gather(
            *(apply(kube, o, children.current.get(k), owner_uid=uid) for k, o in batch)
        )
        results.update(zip((k for k, _ in batch), done, strict=True))
    changes = [f"{results[k][0]} {k}" for k in keys if results[k][0] != "unchanged"]
    return changes, {k: results[k][1] for k in keys}


async def _prune(
    kube: KubeClient, tp: TradingPipeline, uid: str | None, keep: set[str], existing: dict[str, Manifest]
) -> list[str]:
    removed = []
    for key, obj in existing.items():
        kind = key.split("/", 1)[0]
        if kind in PRUNED_KINDS and key not in keep and owned_by(obj, uid):
            await kube.delete(kind, tp.metadata.namespace, obj["metadata"]["name"])
            removed.append(f"deleted {key}")
    return removed


async def reconcile(
    body: Mapping[str, Any],
    *,
    kube: KubeClient,
    pool: BusPool,
    memory: PipelineMemory,
    config: OperatorConfig,
    analyse: bool = False,
) -> Outcome:
    meta = body.get("metadata", {})
    generation = meta.get("generation")
    now = config.clock()
    previous = load(body.get("status"))
    status = previous.model_copy(deep=True)
    status.observed_generation = int(generation) if generation is not None else None

    def cond(kind: Any, value: Any, reason: str, message: str = "") -> None:
        set_condition(
            status, previous, kind, value, reason, message, generation=status.observed_generation, now=now
        )

    try:
        tp = pipeline_from_body(body)
    except PipelineError as exc:
        message = "; ".join(exc.errors)
        status.phase, status.message = "Invalid", message
        cond("InvalidSpec", "True", "SpecInvalid", message)
        cond("Ready", "False", "InvalidSpec", "the spec is invalid; no child was changed")
        return _outcome(previous, status, events=[("Warning", "InvalidSpec", message)])
    refused = image_violations(tp, config.allowed_images) + await credentials_violations(kube, tp)
    if refused:
        message = "; ".join(refused)
        status.phase, status.message = "Invalid", message
        cond("InvalidSpec", "True", "SpecRefused", message)
        cond("Ready", "False", "InvalidSpec", "the spec is refused; no child was changed")
        return _outcome(previous, status, events=_once(previous, "InvalidSpec", message))
    cond("InvalidSpec", "False", "SpecValid")

    def conflict(keys: list[str], detail: str = "") -> Outcome:
        message = detail or (
            f"{', '.join(keys)}: exists but was not created by this TradingPipeline (no "
            "app.kubernetes.io/managed-by: apextrader-operator label with an owner reference to it); "
            "nothing was changed; delete or rename it"
        )
        cond("Ready", "False", "Conflict", message)
        was_running = previous.phase in ("Running", "Degraded")
        status.phase, status.message = ("Degraded" if was_running else "Provisioning"), message
        return _outcome(previous, status, events=_once(previous, "Conflict", message))

    # 0. every child's name is checked before anything is written: a foreign object stops it all
    uid = meta.get("uid")
    planned = build_children(tp, config.image, config.telemetry, key=PLACEHOLDER_KEY, scope=config.network)
    children = await _children(kube, tp, [(o["kind"], o["metadata"]["name"]) for o in planned])
    if foreign := children.conflicts(uid):
        return conflict(foreign)

    # the pipeline key every NATS password derives from (created once, never rewritten)
    key: bytes | None = None
    if tp.spec.bus.managed is not None:
        try:
            key = await ensure_pipeline_key(kube, tp, body)
        except ForeignObject as exc:
            return conflict([exc.key])
        except PipelineKeyInvalid as exc:
            message = str(exc)  # names the Secret, never its content
            cond("BusReady", "False", "PipelineKeyInvalid", message)
            cond("Ready", "False", "NotReady", "bus or agents not ready")
            was_running = previous.phase in ("Running", "Degraded")
            status.phase, status.message = ("Degraded" if was_running else "Provisioning"), message
            return _outcome(previous, status, events=[("Warning", "PipelineKeyInvalid", message)])

    # 1. the bus
    bus_objs = build_bus_children(tp, key, config.network)
    try:
        changes, current = await _apply_all(kube, bus_objs, body, children)
    except ForeignObject as exc:  # created under a child's name since the check above
        return conflict([exc.key])
    except FieldConflict as exc:
        return conflict([exc.key], f"{exc} (another field manager owns these fields; not forced)")
    managed = tp.spec.bus.managed
    bus_ready, bus_reason, bus_message = True, "BusReady", ""
    if managed is not None:
        sts = current.get(f"StatefulSet/{tp.name}-nats")
        ready = _ready(sts, managed.replicas)
        if ready < managed.replicas:
            bus_ready, bus_reason = False, "BusStarting"
            bus_message = f"NATS {ready}/{managed.replicas} ready"
    bus: PipelineBus | None = None
    if bus_ready:
        try:
            bus = await pool.bus(await bus_login(kube, tp, key, config.nats_url), kv_bucket(tp.name))
            topology = declare(tp.spec, tp.name)
            digest = hashlib.sha256(repr(topology).encode()).hexdigest()
            if memory.needs_provisioning(digest, time.monotonic()):
                await bus.provision(topology)
                memory.provisioned = (digest, time.monotonic())
            await bus.observe_streams(topology)
        except BusUnavailable as exc:
            bus, bus_ready, bus_reason, bus_message = None, False, exc.reason, str(exc)
        except KubeError as exc:  # bus.credentialsSecret missing or incomplete
            bus, bus_ready, bus_reason, bus_message = None, False, "BusCredentialsMissing", str(exc)
    cond("BusReady", "True" if bus_ready else "False", bus_reason, bus_message)

    # 2. config and agents, only on a ready bus (agents bind to consumers that must exist)
    agent_objs = build_agent_children(tp, config.image, config.telemetry, key=key)
    keep = {object_key(o) for o in bus_objs + agent_objs}
    if bus_ready:
        try:
            more, agents_current = await _apply_all(kube, agent_objs, body, children)
        except ForeignObject as exc:
            return conflict([exc.key])
        except FieldConflict as exc:
            return conflict([exc.key], f"{exc} (another field manager owns these fields; not forced)")
        changes += more
        current.update(agents_current)
        changes += await _prune(kube, tp, uid, keep, children.listed)

    # 3. readiness from the children's own status
    status.agents = {}
    not_ready = []
    has_canary = tp.spec.canary is not None
    for agent in AGENT_IDS:
        for track in agent_tracks(agent, has_canary):
            name = deployment_name(tp.name, agent, track)
            want = track_spec(tp.spec, "canary" if track == "canary" else "stable").agent(agent).replicas
            ready = _ready(current.get(f"Deployment/{name}"), want)
            status.agents[name] = AgentStatus(track=track, replicas=want, ready_replicas=ready)
            if ready < want or f"Deployment/{name}" not in current:
                not_ready.append(name.removeprefix(f"{tp.name}-"))
    agents_ready = bus_ready and not not_ready
    cond(
        "AgentsReady",
        "True" if agents_ready else "False",
        "AllAgentsReady" if agents_ready else ("WaitingForBus" if not bus_ready else "AgentsStarting"),
        ""
        if agents_ready
        else ("not ready: " + ", ".join(not_ready) if bus_ready else "agents start after the bus"),
    )

    # 4. the canary
    events: list[tuple[str, str, str]] = []
    before = previous.canary.phase
    status.canary = await step_canary(
        tp, previous.canary, now, bus, memory.analysis, analyse, config.metrics_urls
    )
    after = status.canary.phase
    if after != before and after == "Aborted":
        events.append(("Warning", "CanaryAborted", status.canary.message))
    elif after != before and after == "Promoted":
        events.append(("Normal", "CanaryPromoted", status.canary.message))
    healthy = {
        "None": ("True", "NoCanary"),
        "Healthy": ("True", "AnalysisPassing"),
        "Promoted": ("True", "Promoted"),
        "Progressing": ("Unknown", "Progressing"),
        "Paused": ("Unknown", "Paused"),
        "Degraded": ("False", "AnalysisFailing"),
        "Aborted": ("False", "Aborted"),
    }[after]
    cond("CanaryHealthy", healthy[0], healthy[1], status.canary.message)

    ready = bus_ready and agents_ready
    cond(
        "Ready",
        "True" if ready else "False",
        "Ready" if ready else "NotReady",
        "" if ready else "bus or agents not ready",
    )
    was_running = previous.phase in ("Running", "Degraded")
    status.phase = "Running" if ready else ("Degraded" if was_running else "Provisioning")
    status.message = "" if ready else (bus_message or condition(status, "AgentsReady").message)  # type: ignore[union-attr]
    return _outcome(previous, status, changes=changes, events=events)


def _once(previous: TradingPipelineStatus, reason: str, message: str) -> list[tuple[str, str, str]]:
    """A Warning Event when the refusal is new, not again on every timer tick while it lasts."""
    if any(c.message == message for c in previous.conditions if c.type in ("Ready", "InvalidSpec")):
        return []
    return [("Warning", reason, message)]


def _outcome(
    previous: TradingPipelineStatus,
    status: TradingPipelineStatus,
    changes: list[str] | None = None,
    events: list[tuple[str, str, str]] | None = None,
) -> Outcome:
    before, after = dump(previous), dump(status)
    patch = {} if before == after else merge_diff(before, after)
    return Outcome(status=status, status_patch=patch, changes=changes or [], events=events or [])
