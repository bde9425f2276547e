"""Thin kopf handlers: every change and every timer tick is the same idempotent `reconcile`.

Run with `apex operator` (= `kopf run -m apextrader_operator.handlers`). Settings from the
environment (`OperatorConfig.from_env`, docs/operator.md): `APEX_AGENT_IMAGE` (agents' image when
the spec names none), `APEX_OPERATOR_INTERVAL` (seconds between timer ticks: canary steps, analysis,
status), `APEX_OPERATOR_NATS_URL` (reach the bus through a port-forward when the operator runs
outside the cluster), `OTEL_EXPORTER_OTLP_ENDPOINT` and `APEX_AGENT_OTEL_RESOURCE_ATTRIBUTES` (what
every agent exports its traces to, and with which extra resource attributes).
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import kopf

from apextrader.bus.topology import KV_HALT, kv_bucket
from apextrader.contracts.pipeline import API_GROUP, API_VERSION, PLURAL
from apextrader_operator.credentials import bus_login, read_pipeline_key
from apextrader_operator.kube import KubeClient, KubeError, load_credentials
from apextrader_operator.natsbus import BusPool, BusUnavailable
from apextrader_operator.reconcile import OperatorConfig, PipelineMemory, pipeline_from_body, reconcile

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
FINALIZER = "apextrader.io/halt-on-delete"
INTERVAL = float(os.environ.get("APEX_OPERATOR_INTERVAL", "5"))
#: While a create/update has not converged (bus or agents not ready), retry it this soon rather than
#: waiting for the next timer tick.
CONVERGE_DELAY = min(INTERVAL, 2.0)
#: Replaced by tests (fast clock, local NATS) before the operator starts.
CONFIG = OperatorConfig.from_env()
DELETE_RETRIES = 5


@kopf.on.login(retries=3)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = 20  # INFO and above become Events on the CR
    settings.execution.max_workers = 4
    # No cluster scanning: with --namespace kopf would LIST namespaces (which the chart's Role does
    # not grant) and retry for a minute before falling back, and it needs no CRD watch either, as
    # the chart installs the CRD before the operator starts. Found on a real API server.
    settings.scanning.disabled = True
    memo.kube = KubeClient(load_credentials())
    memo.pool = BusPool()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()
    await memo.pool.close()


def _memory(memo: kopf.Memo) -> PipelineMemory:
    if "pipeline" not in memo:
        memo.pipeline = PipelineMemory()
    memory: PipelineMemory = memo.pipeline
    return memory


async def _run(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, analyse: bool) -> bool:
    """One reconcile; returns whether the pipeline is Ready."""
    memory = _memory(memo)
    if memo.kube.closed:
        return False  # the operator is stopping (cleanup ran before this timer was cancelled)
    async with memory.lock:  # the timer and change handlers never interleave on one pipeline
        try:
            outcome = await reconcile(
                body, kube=memo.kube, pool=memo.pool, memory=memory, config=CONFIG, analyse=analyse
            )
        except KubeError as exc:
            if exc.transient:
                raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=2) from exc
            raise kopf.PermanentError(f"Kubernetes API: {exc}") from exc
        except BusUnavailable as exc:
            raise kopf.TemporaryError(f"NATS: {exc}", delay=2) from exc
        except aiohttp.ClientError as exc:  # connection refused/reset: the API server is restarting
            raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=2) from exc
    for change in outcome.changes:
        logger.debug(change)
    for kind, reason, message in outcome.events:
        (kopf.warn if kind == "Warning" else kopf.info)(body, reason=reason, message=message)
    if outcome.status_patch:
        patch.status.update(outcome.status_patch)
    return outcome.status.phase in ("Running", "Invalid")


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def on_change(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, retry: int = 0, **_: Any
) -> None:
    if not await _run(body, patch, memo, logger, analyse=False):
        # kopf keeps the status patch and retries soon: bus → agents → Ready converge step by step.
        # Back off from 0.1 s (retry 1): children that are ready at once (a warm cluster) converge in a few
        # tenths, pods that take their time cost a retry every CONVERGE_DELAY at most.
        delay = min(CONVERGE_DELAY, 0.05 * 2**retry)
        raise kopf.TemporaryError("waiting for the bus and agents to become ready", delay=delay)


# `idle`: no tick while the object is changing (a create/update converging through its handler
# retries); the handler owns that phase and ticks would only contend for the pipeline's lock.
@kopf.timer(*RESOURCE, interval=INTERVAL, initial_delay=INTERVAL, idle=INTERVAL)
async def tick(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """Canary steps and analysis, applied-weight echoes and readiness between spec changes."""
    if _memory(memo).lock.locked():
        return  # a reconcile is running right now: this tick would only repeat it
    await _run(body, patch, memo, logger, analyse=True)


@kopf.on.delete(*RESOURCE, retries=DELETE_RETRIES)
async def on_delete(body: kopf.Body, memo: kopf.Memo, retry: int, logger: Any, **_: Any) -> None:
    """Halt every track before the children go (owner references delete them): no new orders."""
    try:
        tp = pipeline_from_body(body)
    except ValueError:
        return  # an invalid spec never got a bus from us
    try:
        key = await read_pipeline_key(memo.kube, tp)  # the children are still there until we return
        bus = await memo.pool.bus(await bus_login(memo.kube, tp, key, CONFIG.nats_url), kv_bucket(tp.name))
        await bus.put_json(KV_HALT, True)
    except (BusUnavailable, KubeError, aiohttp.ClientError) as exc:
        if retry + 1 >= DELETE_RETRIES:
            logger.warning(f"could not write halt to the bus, deleting anyway: {exc}")
            return
        raise kopf.TemporaryError(f"writing halt: {exc}", delay=2) from exc
    logger.info("halt=true written; owner references remove the children")
