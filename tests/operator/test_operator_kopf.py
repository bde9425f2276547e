"""The operator end to end on kmock (HTTP) and a real nats-server: kopf runs the real handlers."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from apextrader.local.nats_server import EmbeddedNats
from apextrader_operator.kube import KubeClient
from tests.operator.harness import (
    NAMESPACE,
    StampingEmulator,
    eventually,
    kmock_config,
    kube_api,
    kv_get,
    kv_put,
    mark_ready,
    running_operator,
)

ROOT = Path(__file__).resolve().parents[2]
NAME = "btc-perp"
BUCKET = f"apex-{NAME}"
pytestmark = pytest.mark.timeout(60)


def example_cr(**spec_changes: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "manifests" / "pipeline.yaml").read_text())
    doc["metadata"]["namespace"] = NAMESPACE
    doc["spec"].update(spec_changes)
    return copy.deepcopy(doc)


@dataclass
class Env:
    emulator: StampingEmulator
    kube: KubeClient
    nats: EmbeddedNats

    async def cr(self) -> dict[str, Any]:
        obj = await self.kube.get("TradingPipeline", NAMESPACE, NAME)
        assert obj is not None
        return obj

    async def status(self) -> dict[str, Any]:
        return dict((await self.cr()).get("status") or {})

    async def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in await self.kube.list(kind, NAMESPACE)}

    async def patch_spec(self, spec: dict[str, Any]) -> None:
        await self.kube.patch("TradingPipeline", NAMESPACE, NAME, {"spec": spec})

    async def condition(self, kind: str) -> str | None:
        for c in (await self.status()).get("conditions", []):
            if c["type"] == kind:
                return str(c["status"])
        return None

    async def mark_all_ready(self) -> None:
        for obj in await self.kube.list("Deployment", NAMESPACE):
            await mark_ready(self.kube, "Deployment", obj["metadata"]["name"], obj["spec"]["replicas"])


@pytest.fixture
async def env(tmp_path: Path, nats_server: EmbeddedNats) -> AsyncIterator[Env]:
    async with kube_api(tmp_path) as (emulator, kube):
        config = kmock_config(image="apextrader:test", nats_url=nats_server.url, metrics_urls=lambda tp: [])
        async with running_operator(config):
            yield Env(emulator, kube, nats_server)


async def start(env: Env, cr: dict[str, Any]) -> None:
    await env.kube.create(cr)
    await eventually(lambda: env.names("StatefulSet"), what="NATS StatefulSet")
    await mark_ready(env.kube, "StatefulSet", f"{NAME}-nats")
    await eventually(
        lambda: _has(env, "Deployment", f"{NAME}-execution-canary"), what="agent Deployments after the bus"
    )


async def _has(env: Env, kind: str, name: str) -> bool:
    return name in await env.names(kind)


async def test_create_renders_children_with_owner_refs_and_ready_follows_children(env: Env) -> None:
    await env.kube.create(example_cr())
    await eventually(lambda: env.names("StatefulSet"), what="NATS StatefulSet")
    # ordered start: no agent before the bus is ready
    assert await env.names("Deployment") == set()
    assert (await eventually(env.status, what="status")).get("phase") in ("Provisioning", None)
    await mark_ready(env.kube, "StatefulSet", f"{NAME}-nats")
    await eventually(lambda: _has(env, "Deployment", f"{NAME}-execution-canary"), what="agents")
    cr = await env.cr()
    uid = cr["metadata"]["uid"]
    deployments = await env.kube.list("Deployment", NAMESPACE)
    assert len(deployments) == 10  # 4 shared + 3 decision agents x 2 tracks
    for kind in ("Deployment", "Service", "ConfigMap", "ServiceAccount", "StatefulSet", "NetworkPolicy"):
        for obj in await env.kube.list(kind, NAMESPACE):
            refs = obj["metadata"].get("ownerReferences", [])
            assert [r["uid"] for r in refs] == [uid], (kind, obj["metadata"]["name"])
            assert refs[0]["kind"] == "TradingPipeline" and refs[0]["controller"] is True
    # applied, not yet ready: Ready must wait for the Deployments' own status
    await eventually(lambda: _cond_is(env, "BusReady", "True"), what="BusReady")
    assert await env.condition("Ready") == "False"
    assert await env.condition("AgentsReady") == "False"
    await env.mark_all_ready()
    await eventually(lambda: _cond_is(env, "Ready", "True"), what="Ready")
    status = await env.status()
    assert status["phase"] == "Running"
    assert status["observedGeneration"] == 1 and isinstance(status["observedGeneration"], int)
    assert status["agents"][f"{NAME}-risk-manager-canary"] == {
        "track": "canary",
        "replicas": 1,
        "readyReplicas": 1,
    }
    # streams, consumers and KV exist on the real server; the canary weight was published
    assert await kv_get(env.nats.url, BUCKET, "canary.weight") == 5
    assert await kv_get(env.nats.url, BUCKET, "canary.state") == "progressing"


async def _cond_is(env: Env, kind: str, value: str) -> bool:
    return await env.condition(kind) == value


async def test_scale_edit_patches_and_canary_tracks_follow_spec(env: Env) -> None:
    cr = example_cr()
    del cr["spec"]["canary"]
    await env.kube.create(cr)
    await eventually(lambda: env.names("StatefulSet"), what="NATS")
    await mark_ready(env.kube, "StatefulSet", f"{NAME}-nats")
    await eventually(lambda: _has(env, "Deployment", f"{NAME}-execution-stable"), what="agents")
    assert not {n for n in await env.names("Deployment") if n.endswith("-canary")}

    await env.patch_spec({"agents": {"strategy-builder": {"replicas": 3}}})

    async def scaled() -> bool:
        dep = await env.kube.get("Deployment", NAMESPACE, f"{NAME}-strategy-builder-stable")
        return dep is not None and dep["spec"]["replicas"] == 3

    await eventually(scaled, what="strategy-builder scaled to 3")
    await eventually(lambda: _gen_observed(env, 2), what="observedGeneration 2")

    await env.patch_spec({"canary": {"weight": 10, "template": {"risk": {"maxLeverage": 2}}}})
    for agent in ("strategy-builder", "risk-manager", "execution"):
        await eventually(
            lambda a=agent: _has(env, "Deployment", f"{NAME}-{a}-canary"), what=f"{agent} canary"
        )
    assert await eventually(lambda: _kv_is(env, "canary.weight", 10), what="KV weight 10")


async def _gen_observed(env: Env, gen: int) -> bool:
    return (await env.status()).get("observedGeneration") == gen


async def _kv_is(env: Env, key: str, value: Any) -> bool:
    return await kv_get(env.nats.url, BUCKET, key) == value


async def test_weight_edit_reaches_kv_and_applied_weight_is_echoed_in_status(env: Env) -> None:
    await start(env, example_cr())
    await env.patch_spec({"canary": {"weight": 25}})
    await eventually(lambda: _kv_is(env, "canary.weight", 25), what="KV canary.weight 25")
    # what a running risk manager does: echo what it applied
    await kv_put(
        env.nats.url,
        BUCKET,
        "applied.risk-manager.canary.pod-a",
        {"weight": 25, "state": "progressing", "at": "2026-01-01T00:00:01Z"},
    )
    await kv_put(
        env.nats.url,
        BUCKET,
        "applied.risk-manager.stable.pod-b",
        {"weight": 75, "state": "progressing", "at": "2026-01-01T00:00:01Z"},
    )

    async def echoed() -> bool:
        canary = (await env.status()).get("canary", {})
        return (
            canary.get("appliedWeight") == {"stable": 75, "canary": 25}
            and canary.get("effectiveWeight") == 25
        )

    await eventually(echoed, what="applied weights in status")


async def test_failing_analysis_aborts_the_canary(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    from aiohttp import web
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    registry = CollectorRegistry()
    events = Counter("apex_events", "", ["agent", "track", "type", "outcome"], registry=registry)
    dlq = Counter("apex_dlq", "", ["agent", "track", "stream", "reason"], registry=registry)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=generate_latest(registry).decode())

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        server = nats_server
        async with kube_api(tmp_path) as (emulator, kube):
            config = kmock_config(
                nats_url=server.url, metrics_urls=lambda tp: [f"http://127.0.0.1:{port}/metrics"]
            )
            async with running_operator(config):
                env = Env(emulator, kube, server)
                cr = example_cr()
                cr["spec"]["canary"]["analysis"] = {"interval": "1s", "failureLimit": 1}
                await start(env, cr)
                events.labels("risk-manager", "canary", "signal.validated", "acked").inc(5)
                # after the baseline scrape, the canary track loses events to the DLQ
                await eventually(lambda: _analysed(env), what="a baseline analysis")
                dlq.labels("risk-manager", "canary", "APEX_BTC_PERP_SIGNALS", "handler_error").inc(2)
                events.labels("risk-manager", "canary", "signal.validated", "acked").inc(5)

                async def aborted() -> bool:
                    return (await env.status()).get("canary", {}).get("phase") == "Aborted"

                await eventually(aborted, within=15, what="canary Aborted")
                canary = (await env.status())["canary"]
                assert canary["effectiveWeight"] == 0 and "maxDlqLoss" in canary["failedChecks"]
                assert canary["lastAnalysis"]["result"] == "Fail"
                assert await eventually(lambda: _kv_is(env, "canary.weight", 0), what="KV weight 0")
                assert await eventually(
                    lambda: _kv_is(env, "canary.state", "aborted"), what="KV state aborted"
                )
                assert await env.condition("CanaryHealthy") == "False"
                reasons = {e.get("reason") for e in await kube.list("Event", NAMESPACE)}
                assert "CanaryAborted" in reasons
    finally:
        await runner.cleanup()


async def _analysed(env: Env) -> bool:
    return bool((await env.status()).get("canary", {}).get("lastAnalysis"))


async def test_promote_then_fold_removes_canary_tracks(env: Env) -> None:
    await start(env, example_cr())
    await env.patch_spec({"canary": {"promote": True}})
    await eventually(lambda: _kv_is(env, "canary.weight", 100), what="KV weight 100")

    async def promoted() -> bool:  # the KV write lands before the status patch of the same pass
        return bool((await env.status()).get("canary", {}).get("phase") == "Promoted")

    await eventually(promoted, what="status.canary.phase Promoted")
    # the fold (what `apex canary promote` sends): template into the base, canary removed
    await env.patch_spec({"strategies": {"breakout": {"lookback": 30, "volumeFactor": 1.5}}, "canary": None})

    async def canary_gone() -> bool:
        names = await env.names("Deployment") | await env.names("Service")
        return not {n for n in names if n.endswith("-canary")}

    await eventually(canary_gone, what="canary Deployments and Services deleted")
    cm = await env.kube.get("ConfigMap", NAMESPACE, f"{NAME}-config")
    assert cm is not None and "lookback: 30" in cm["data"]["pipeline.yaml"]
    await eventually(lambda: _kv_is(env, "canary.weight", 0), what="KV weight 0 without canary")


async def test_invalid_spec_sets_condition_and_creates_nothing(env: Env) -> None:
    cr = example_cr()
    cr["spec"]["canary"]["template"] = {"risk": {"maxLeverage": -1}}  # valid for the schema, not merged
    await env.kube.create(cr)

    async def invalid() -> bool:
        return await env.condition("InvalidSpec") == "True"

    await eventually(invalid, what="InvalidSpec")
    status = await env.status()
    assert status["phase"] == "Invalid"
    assert "spec.canary.template.risk.maxLeverage" in next(
        c["message"] for c in status["conditions"] if c["type"] == "InvalidSpec"
    )
    for kind in ("Deployment", "StatefulSet", "ConfigMap", "Service"):
        assert await env.names(kind) == set(), kind


async def test_reconcile_again_changes_nothing(env: Env, tmp_path: Path) -> None:
    from apextrader_operator.natsbus import BusPool
    from apextrader_operator.reconcile import PipelineMemory, reconcile

    await start(env, example_cr())
    await env.mark_all_ready()
    await eventually(lambda: _cond_is(env, "Ready", "True"), what="Ready")
    body = await env.cr()
    pool = BusPool()
    try:
        config = kmock_config(image="apextrader:test", nats_url=env.nats.url)
        outcome = await reconcile(body, kube=env.kube, pool=pool, memory=PipelineMemory(), config=config)
    finally:
        await pool.close()
    assert outcome.changes == []
    assert outcome.status_patch == {}, outcome.status_patch


async def test_delete_writes_halt_before_the_finalizer_is_released(env: Env) -> None:
    await start(env, example_cr())
    cr = await env.cr()
    assert "apextrader.io/halt-on-delete" in cr["metadata"].get("finalizers", [])
    assert await kv_get(env.nats.url, BUCKET, "halt") is None
    await env.kube.delete("TradingPipeline", NAMESPACE, NAME)

    async def gone() -> bool:
        return await env.kube.get("TradingPipeline", NAMESPACE, NAME) is None

    await eventually(gone, what="the CR released by the finalizer")
    assert await kv_get(env.nats.url, BUCKET, "halt") is True
