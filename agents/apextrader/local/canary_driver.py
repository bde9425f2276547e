"""The canary under `apex up`: the same pure state machine the operator runs (`apextrader.canary`),
driven by a local loop instead of kopf timers. Requests from `apex canary ... --local` arrive in KV
`canary.request` and go through the same `canary.actions.apply_action` as on a cluster; the
effective weight goes to KV `canary.weight` for the risk managers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NoKeysError, NotFoundError
from prometheus_client import start_http_server
from pydantic import ValidationError

from apextrader.bus.kv import KV
from apextrader.bus.metrics import REGISTRY
from apextrader.bus.topology import KV_CANARY_REQUEST, KV_CANARY_STATE, KV_CANARY_WEIGHT, declare
from apextrader.canary.actions import ActionError, CanaryAction, apply_action
from apextrader.canary.export import export_analysis, export_canary_metrics
from apextrader.canary.machine import advance, analysis_due, kv_state, with_positions
from apextrader.canary.sources import AnalysisMemory, run_analysis
from apextrader.contracts import utcnow
from apextrader.contracts.canary_spec import CanarySpec
from apextrader.contracts.names import DECISION_AGENTS
from apextrader.contracts.pipeline import TradingPipeline
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.status import CanaryStatus
from apextrader.local.options import write_pipeline
from apextrader.local.supervisor import Supervisor
from apextrader.report.run_summary import CanaryRecord

#: Called with the folded spec after `promote`: makes the processes match it (as the operator does).
OnPromote = Callable[[TradingPipelineSpec], Awaitable[None]]


@dataclass
class LocalCanary:
    """Owns the local pipeline spec and canary status; `tick()` advances and publishes the weight."""

    kv: KV
    spec: TradingPipelineSpec
    status: CanaryStatus = field(default_factory=CanaryStatus)
    history: list[tuple[float, int]] = field(default_factory=list)  # (unix time, effective weight)
    last_request_error: str | None = None
    last_request_message: str | None = None
    on_promote: OnPromote | None = None
    #: The agents' /metrics pages the analysis reads (None: no analysis, e.g. before they start).
    metrics_urls: Callable[[], list[str]] | None = None
    pipeline: str = "local"
    memory: AnalysisMemory = field(default_factory=AnalysisMemory)
    #: Set once `promote` folded the canary into the spec (the canary no longer exists).
    promoted_message: str | None = None
    _published: tuple[int, str] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def canary(self) -> CanarySpec | None:
        return self.spec.canary

    async def tick(self, now: datetime | None = None) -> CanaryStatus:
        async with self._lock:  # the view loop and the request watcher both tick
            return await self._tick(now)

    async def _tick(self, now: datetime | None) -> CanaryStatus:
        await self._take_request()
        now = now or utcnow()
        run = None
        if self.canary is not None and self.metrics_urls and analysis_due(self.canary, self.status, now):
            run = await run_analysis(self.canary.analysis, self.metrics_urls(), self.memory, now)
            export_analysis(self.pipeline, run)
        self.status = with_positions(advance(self.canary, self.status, now, run), await self._canary_echoes())
        export_canary_metrics(self.pipeline, self.status)
        weight = self.status.effective_weight if self.canary else 0
        state = kv_state(self.status.phase)
        if self._published != (weight, state):
            await self.kv.put_json(KV_CANARY_WEIGHT, weight)
            await self.kv.put_json(KV_CANARY_STATE, state)
            self._published = (weight, state)
            self.history.append((time.time(), weight))
        return self.status

    async def _canary_echoes(self) -> dict[str, Any]:
        """The canary risk managers' `applied.*` echoes (what they hold after an abort)."""
        if self.status.phase != "Aborted":
            return {}
        prefix = "applied.risk-manager.canary."
        try:
            keys = await self.kv.raw.keys(filters=[prefix])
        except (NoKeysError, NotFoundError):
            return {}
        return {k: await self.kv.get_json(k) for k in keys if k.startswith(prefix)}

    async def _take_request(self) -> None:
        request = await self.kv.get_json(KV_CANARY_REQUEST)
        if not request:
            return
        await self.kv.delete(KV_CANARY_REQUEST)
        try:
            await self.apply(CanaryAction.model_validate(request))
        except ValidationError as exc:
            self.last_request_error = f"invalid request {request!r}: {exc.errors()[0]['msg']}"
        except ActionError as exc:
            self.last_request_error = str(exc)

    async def apply(self, action: CanaryAction) -> str:
        """Apply one action to the local spec (ActionError if it cannot apply)."""
        doc = self.spec.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")
        result = apply_action(doc, self.status, action)
        promoted = self.canary is not None and "canary" not in result.spec
        self.spec = TradingPipelineSpec.model_validate(result.spec)
        self.last_request_error, self.last_request_message = None, result.message
        if promoted:
            self.promoted_message = result.message
            if self.on_promote is not None:
                await self.on_promote(self.spec)
        return result.message


def attach(canary: LocalCanary, supervisor: Supervisor, tp: TradingPipeline, js: JetStreamContext) -> None:
    """Wire the local canary to the running agents: its analysis reads their /metrics pages, and a
    promote restarts them as the operator would re-render them."""
    canary.pipeline = tp.name
    canary.metrics_urls = lambda: [f"http://127.0.0.1:{p.http_port}/metrics" for p in supervisor.processes]
    canary.on_promote = restart_as_promoted(supervisor, tp, js)


def serve_metrics() -> int:
    """Serve the supervisor's own metrics (`apex_canary_*`) on a free local port; returns the port."""
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=REGISTRY)
    return int(server.server_port)


def restart_as_promoted(supervisor: Supervisor, tp: TradingPipeline, js: JetStreamContext) -> OnPromote:
    """What the operator does after a fold, for `apex up`: the stable decision agents restart on the
    folded spec (their watchers restart them), the canary's processes stop and its durable consumers,
    no longer declared, are deleted (so they hold no messages)."""

    async def promote(spec: TradingPipelineSpec) -> None:
        before = declare(tp.spec, tp.name)
        write_pipeline(tp.model_copy(update={"spec": spec}), supervisor.pipeline_file)
        for ap in list(supervisor.processes):
            if ap.agent not in DECISION_AGENTS:
                continue
            if ap.track == "canary":
                await supervisor.retire(ap.key)
            elif ap.proc is not None and ap.proc.returncode is None:
                ap.proc.terminate()  # the watcher starts it again, reading the folded spec
        kept = {(c.stream, c.durable) for c in declare(spec, tp.name).consumers}
        for c in before.consumers:
            if (c.stream, c.durable) not in kept:
                with contextlib.suppress(NotFoundError):
                    await js.delete_consumer(c.stream, c.durable)

    return promote


def canary_record(local: LocalCanary, open_notional: float | None) -> CanaryRecord | None:
    """What `summary.json` and the report say about the canary at the end of a run."""
    if local.promoted_message is not None:
        return CanaryRecord(phase="Promoted", message=local.promoted_message, open_notional=open_notional)
    if local.canary is None:
        return None
    policy = local.canary.abort_policy if local.canary is not None else "drain"
    return CanaryRecord(
        phase=local.status.phase,
        message=local.status.message,
        abort_policy=policy,
        open_notional=open_notional,
    )


def request_json(action: CanaryAction) -> dict[str, Any]:
    """The KV `canary.request` value for an action."""
    return action.model_dump(by_alias=True, exclude_none=True)
