"""Thin kopf handlers: every change and every timer tick is the same idempotent `reconcile`.

`apex operator` calls `run(OperatorConfig.from_env(), ...)`: the settings are read once
(`settings.OperatorConfig`, docs/operator.md "Settings"), the handlers are registered on a registry
of their own (`registry(config)`: the timer interval is a setting) and every handler finds the
config in kopf's memo (`memo.config`). Tests build their own config and call `registry`/`memo`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import aiohttp
import kopf

from apextrader.bus.topology import KV_HALT, kv_bucket
from apextrader.contracts.pipeline import API_GROUP, API_VERSION, PLURAL
from apextrader_operator.credentials import bus_login, read_pipeline_key
from apextrader_operator.kube import KubeClient, KubeError, load_credentials
from apextrader_operator.natsbus import BusPool, BusUnavailable
from apextrader_operator.reconcile import PipelineMemory, pipeline_from_body, reconcile
from apextrader_operator.settings import OperatorConfig

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
FINALIZER = "apextrader.io/halt-on-delete"
DELETE_RETRIES = 5


def memo(config: OperatorConfig) -> kopf.Memo:
    """The operator-wide memo: every resource's memo is a shallow copy of it, so `memo.config` is
    the same frozen config everywhere."""
    return kopf.Memo(config=config)


def registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """The handlers below, registered with the timer interval of `config`."""
    reg = kopf.OperatorRegistry()
    kopf.on.login(registry=reg, retries=3)(login)
    kopf.on.startup(registry=reg)(startup)
    kopf.on.cleanup(registry=reg)(cleanup)
    for on in (kopf.on.resume, kopf.on.create):
        on(*RESOURCE, registry=reg)(on_change)
    kopf.on.update(*RESOURCE, registry=reg, field="spec")(on_change)
    # `idle`: no tick while the object is changing (a create/update converging through its handler
    # retries); the handler owns that phase and ticks would only contend for the pipeline's lock.
    interval = config.interval_s
    kopf.timer(*RESOURCE, registry=reg, interval=interval, initial_delay=interval, idle=interval)(tick)
    kopf.on.delete(*RESOURCE, registry=reg, retries=DELETE_RETRIES)(on_delete)
    return reg


def run(config: OperatorConfig, *, namespaces: Collection[str], liveness: str | None, verbose: bool) -> None:
    """The operator in this process until SIGTERM/SIGINT (all namespaces when none are given)."""
    kopf.configure(verbose=verbose)
    kopf.run(
        registry=registry(config),
        memo=memo(config),
        standalone=True,
        namespaces=list(namespaces),
        clusterwide=not namespaces,
        liveness_endpoint=liveness,
    )


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = 20  # INFO and above become Events on the CR
    settings.execution.max_workers = 4
    # No cluster scanning: with --namespace kopf would LIST namespaces (which the chart's Role does
    # not grant) and retry for a minute before falling back, and it needs no CRD watch either, as
    # the chart installs the CRD before the operator starts. Found on a real API server.
    settings.scanning.disabled = True
    config: OperatorConfig = memo.config
    memo.kube = KubeClient(load_credentials(), server_side_apply=config.server_side_apply)
    memo.pool = BusPool()


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
                body, kube=memo.kube, pool=memo.pool, memory=memory, config=memo.config, analyse=analyse
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


async def on_change(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, retry: int = 0, **_: Any
) -> None:
    if not await _run(body, patch, memo, logger, analyse=False):
        # kopf keeps the status patch and retries soon: bus → agents → Ready converge step by step.
        # Back off from 0.1 s (retry 1): children that are ready at once (a warm cluster) converge in a few
        # tenths, pods that take their time cost a retry every converge_delay_s at most.
        delay = min(memo.config.converge_delay_s, 0.05 * 2**retry)
        raise kopf.TemporaryError("waiting for the bus and agents to become ready", delay=delay)


async def tick(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """Canary steps and analysis, applied-weight echoes and readiness between spec changes."""
    if _memory(memo).lock.locked():
        return  # a reconcile is running right now: this tick would only repeat it
    await _run(body, patch, memo, logger, analyse=True)


async def on_delete(body: kopf.Body, memo: kopf.Memo, retry: int, logger: Any, **_: Any) -> None:
    """Halt every track before the children go (owner references delete them): no new orders."""
    try:
        tp = pipeline_from_body(body)
    except ValueError:
        return  # an invalid spec never got a bus from us
    try:
        key = await read_pipeline_key(memo.kube, tp)  # the children are still there until we return
        bus = await memo.pool.bus(
            await bus_login(memo.kube, tp, key, memo.config.nats_url), kv_bucket(tp.name)
        )
        await bus.put_json(KV_HALT, True)
    except (BusUnavailable, KubeError, aiohttp.ClientError) as exc:
        if retry + 1 >= DELETE_RETRIES:
            logger.warning(f"could not write halt to the bus, deleting anyway: {exc}")
            return
        raise kopf.TemporaryError(f"writing halt: {exc}", delay=2) from exc
    logger.info("halt=true written; owner references remove the children")
