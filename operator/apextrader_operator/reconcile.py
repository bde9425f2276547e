"""One idempotent reconcile for create, resume, update and the timer.

Order (docs/conventions.md §6): the pipeline key (managed bus), the bus with its users; once it is
ready, streams/consumers/KV; then config and agents (each with its NATS credentials) upstream to
downstream. An invalid spec changes no child. Ready follows the children's own status
(Deployments' and the StatefulSet's readyReplicas), never the fact that they were applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apextrader.bus.topology import declare, deployment_name, kv_bucket
from apextrader.contracts.names import AGENT_IDS, agent_tracks
from apextrader.contracts.pipeline import PipelineError, TradingPipeline, parse_pipeline, track_spec
from apextrader.contracts.status import AgentStatus, TradingPipelineStatus
from apextrader_operator.apply import FieldConflict, ForeignObject, merge_diff, object_key
from apextrader_operator.builders import (
    build_agent_children,
    build_bus_children,
    build_children,
)
from apextrader_operator.builders.labels import Manifest
from apextrader_operator.canary_ops import AnalysisMemory, step_canary
from apextrader_operator.children import Children, apply_all, prune, read_children, ready_replicas
from apextrader_operator.credentials import PipelineKeyInvalid, bus_login, ensure_pipeline_key
from apextrader_operator.kube import KubeClient, KubeError
from apextrader_operator.natsbus import BusPool, BusUnavailable, PipelineBus
from apextrader_operator.policy import credentials_violations, image_violations
from apextrader_operator.settings import OperatorConfig
from apextrader_operator.status import condition, dump, load, set_condition

#: Builds the children's names before the pipeline key exists (names never depend on the key).
PLACEHOLDER_KEY = bytes(32)
#: Re-check streams and consumers this often even without spec changes (someone may delete them).
REPROVISION_S = 60.0


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


class _Done(Exception):  # not an error: a step ended the reconcile with this outcome
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


@dataclass
class _Pass:
    """One reconcile's status as it is written: conditions stamped with the generation and clock."""

    previous: TradingPipelineStatus
    status: TradingPipelineStatus
    now: datetime

    def cond(self, kind: Any, value: Any, reason: str, message: str = "") -> None:
        set_condition(
            self.status,
            self.previous,
            kind,
            value,
            reason,
            message,
            generation=self.status.observed_generation,
            now=self.now,
        )

    def not_running(self, message: str) -> None:
        was_running = self.previous.phase in ("Running", "Degraded")
        self.status.phase, self.status.message = ("Degraded" if was_running else "Provisioning"), message

    def invalid(self, reason: str, message: str, ready: str, events: list[tuple[str, str, str]]) -> _Done:
        self.status.phase, self.status.message = "Invalid", message
        self.cond("InvalidSpec", "True", reason, message)
        self.cond("Ready", "False", "InvalidSpec", ready)
        return _Done(_outcome(self.previous, self.status, events=events))

    def conflict(self, keys: list[str], detail: str = "") -> _Done:
        message = detail or (
            f"{', '.join(keys)}: exists but was not created by this TradingPipeline (no "
            "app.kubernetes.io/managed-by: apextrader-operator label with an owner reference to it); "
            "nothing was changed; delete or rename it"
        )
        self.cond("Ready", "False", "Conflict", message)
        self.not_running(message)
        return _Done(_outcome(self.previous, self.status, events=_once(self.previous, "Conflict", message)))


async def reconcile(
    body: Mapping[str, Any],
    *,
    kube: KubeClient,
    pool: BusPool,
    memory: PipelineMemory,
    config: OperatorConfig,
    analyse: bool = False,
) -> Outcome:
    """Admit the spec, check every child's name, the pipeline key, the bus, the agents, readiness,
    the canary: each step may end the pass with its outcome (`_Done`)."""
    generation = body.get("metadata", {}).get("generation")
    previous = load(body.get("status"))
    run = _Pass(previous, previous.model_copy(deep=True), config.clock())
    run.status.observed_generation = int(generation) if generation is not None else None
    try:
        tp = await _admit(body, kube, config, run)
        children = await _check_names(body, kube, tp, config, run)
        key = await _pipeline_key(body, kube, tp, run)
        bus_objs = build_bus_children(tp, key, config.network)
        changes, current = await _apply_or_conflict(kube, bus_objs, body, children, run)
        bus, bus_message = await _bus(kube, pool, memory, tp, key, config, current, run)
        agent_objs = build_agent_children(tp, config.image, config.telemetry, key=key)
        if bus is not None:  # agents bind to consumers that must exist
            more, agents_current = await _apply_or_conflict(kube, agent_objs, body, children, run)
            current.update(agents_current)
            keep = {object_key(o) for o in bus_objs + agent_objs}
            changes += more + await prune(
                kube, tp, body.get("metadata", {}).get("uid"), keep, children.listed
            )
    except _Done as done:
        return done.outcome
    agents_ready = _agents_ready(tp, current, bus is not None, run)
    events = await _step_canary(tp, bus, memory, analyse, config, run)
    ready = bus is not None and agents_ready
    run.cond(
        "Ready",
        "True" if ready else "False",
        "Ready" if ready else "NotReady",
        "" if ready else "bus or agents not ready",
    )
    if ready:
        run.status.phase, run.status.message = "Running", ""
    else:
        run.not_running(bus_message or condition(run.status, "AgentsReady").message)  # type: ignore[union-attr]
    return _outcome(previous, run.status, changes=changes, events=events)


async def _admit(
    body: Mapping[str, Any], kube: KubeClient, config: OperatorConfig, run: _Pass
) -> TradingPipeline:
    """The spec parses (with the canary's merged spec) and asks only for what the operator allows."""
    try:
        tp = pipeline_from_body(body)
    except PipelineError as exc:
        message = "; ".join(exc.errors)
        raise run.invalid(
            "SpecInvalid",
            message,
            "the spec is invalid; no child was changed",
            [("Warning", "InvalidSpec", message)],
        ) from None
    refused = image_violations(tp, config.allowed_images) + await credentials_violations(kube, tp)
    if refused:
        message = "; ".join(refused)
        events = _once(run.previous, "InvalidSpec", message)
        raise run.invalid("SpecRefused", message, "the spec is refused; no child was changed", events)
    run.cond("InvalidSpec", "False", "SpecValid")
    return tp


async def _check_names(
    body: Mapping[str, Any], kube: KubeClient, tp: TradingPipeline, config: OperatorConfig, run: _Pass
) -> Children:
    """Every child's name is checked before anything is written: a foreign object stops it all."""
    planned = build_children(tp, config.image, config.telemetry, key=PLACEHOLDER_KEY, scope=config.network)
    children = await read_children(kube, tp, [(o["kind"], o["metadata"]["name"]) for o in planned])
    if foreign := children.conflicts(body.get("metadata", {}).get("uid")):
        raise run.conflict(foreign)
    return children


async def _pipeline_key(
    body: Mapping[str, Any], kube: KubeClient, tp: TradingPipeline, run: _Pass
) -> bytes | None:
    """The key every NATS password derives from (created once, never rewritten); none for `bus.url`."""
    if tp.spec.bus.managed is None:
        return None
    try:
        return await ensure_pipeline_key(kube, tp, body)
    except ForeignObject as exc:
        raise run.conflict([exc.key]) from None
    except PipelineKeyInvalid as exc:
        message = str(exc)  # names the Secret, never its content
        run.cond("BusReady", "False", "PipelineKeyInvalid", message)
        run.cond("Ready", "False", "NotReady", "bus or agents not ready")
        run.not_running(message)
        raise _Done(
            _outcome(run.previous, run.status, events=[("Warning", "PipelineKeyInvalid", message)])
        ) from None


async def _apply_or_conflict(
    kube: KubeClient, objs: list[Manifest], owner: Mapping[str, Any], children: Children, run: _Pass
) -> tuple[list[str], dict[str, Manifest]]:
    try:
        return await apply_all(kube, objs, owner, children)
    except ForeignObject as exc:  # created under a child's name since the names were checked
        raise run.conflict([exc.key]) from None
    except FieldConflict as exc:
        raise run.conflict(
            [exc.key], f"{exc} (another field manager owns these fields; not forced)"
        ) from None


async def _bus(
    kube: KubeClient,
    pool: BusPool,
    memory: PipelineMemory,
    tp: TradingPipeline,
    key: bytes | None,
    config: OperatorConfig,
    current: dict[str, Manifest],
    run: _Pass,
) -> tuple[PipelineBus | None, str]:
    """The bus once its servers are ready, with streams/consumers/KV provisioned (None: not ready,
    with the reason in `BusReady` and the message returned)."""
    managed = tp.spec.bus.managed
    reason, message = "BusReady", ""
    bus: PipelineBus | None = None
    ready = (
        0 if managed is None else ready_replicas(current.get(f"StatefulSet/{tp.name}-nats"), managed.replicas)
    )
    if managed is not None and ready < managed.replicas:
        reason, message = "BusStarting", f"NATS {ready}/{managed.replicas} ready"
    else:
        try:
            bus = await pool.bus(await bus_login(kube, tp, key, config.nats_url), kv_bucket(tp.name))
            topology = declare(tp.spec, tp.name)
            digest = hashlib.sha256(repr(topology).encode()).hexdigest()
            if memory.needs_provisioning(digest, time.monotonic()):
                await bus.provision(topology)
                memory.provisioned = (digest, time.monotonic())
            await bus.observe_streams(topology)
        except BusUnavailable as exc:
            bus, reason, message = None, exc.reason, str(exc)
        except KubeError as exc:  # bus.credentialsSecret missing or incomplete
            bus, reason, message = None, "BusCredentialsMissing", str(exc)
    run.cond("BusReady", "True" if bus is not None else "False", reason, message)
    return bus, message


def _agents_ready(tp: TradingPipeline, current: dict[str, Manifest], bus_ready: bool, run: _Pass) -> bool:
    """Readiness from the children's own status (readyReplicas), never from having applied them."""
    run.status.agents = {}
    not_ready = []
    for agent in AGENT_IDS:
        for track in agent_tracks(agent, tp.spec.canary is not None):
            name = deployment_name(tp.name, agent, track)
            want = track_spec(tp.spec, "canary" if track == "canary" else "stable").agent(agent).replicas
            ready = ready_replicas(current.get(f"Deployment/{name}"), want)
            run.status.agents[name] = AgentStatus(track=track, replicas=want, ready_replicas=ready)
            if ready < want or f"Deployment/{name}" not in current:
                not_ready.append(name.removeprefix(f"{tp.name}-"))
    agents_ready = bus_ready and not not_ready
    run.cond(
        "AgentsReady",
        "True" if agents_ready else "False",
        "AllAgentsReady" if agents_ready else ("WaitingForBus" if not bus_ready else "AgentsStarting"),
        ""
        if agents_ready
        else ("not ready: " + ", ".join(not_ready) if bus_ready else "agents start after the bus"),
    )
    return agents_ready


_CANARY_HEALTH: dict[str, tuple[str, str]] = {
    "None": ("True", "NoCanary"),
    "Healthy": ("True", "AnalysisPassing"),
    "Promoted": ("True", "Promoted"),
    "Progressing": ("Unknown", "Progressing"),
    "Paused": ("Unknown", "Paused"),
    "Degraded": ("False", "AnalysisFailing"),
    "Aborted": ("False", "Aborted"),
}


async def _step_canary(
    tp: TradingPipeline,
    bus: PipelineBus | None,
    memory: PipelineMemory,
    analyse: bool,
    config: OperatorConfig,
    run: _Pass,
) -> list[tuple[str, str, str]]:
    """The canary's step and analysis; an Event when it aborts or is promoted."""
    events: list[tuple[str, str, str]] = []
    before = run.previous.canary.phase
    run.status.canary = await step_canary(
        tp, run.previous.canary, run.now, bus, memory.analysis, analyse, config.metrics_urls
    )
    after = run.status.canary.phase
    if after != before and after == "Aborted":
        events.append(("Warning", "CanaryAborted", run.status.canary.message))
    elif after != before and after == "Promoted":
        events.append(("Normal", "CanaryPromoted", run.status.canary.message))
    healthy, reason = _CANARY_HEALTH[after]
    run.cond("CanaryHealthy", healthy, reason, run.status.canary.message)
    return events


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
