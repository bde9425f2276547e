"""Operator benchmarks on kmock (HTTP) with a real nats-server. Smoke-sized by default, full with
APEX_BENCH_FULL=1 (`make bench`). They print numbers and ratios; they never assert on timing.

- create → all children present and status Ready (goal < 1 s): the test acts as the Deployment and
  StatefulSet controllers, marking each child ready the moment it appears;
- weight edit → applied weight echoed in status (goal < 2 s): the test acts as the canary risk manager,
  watching KV `canary.weight` and echoing `applied.risk-manager.canary.<instance>`;
- operator RSS with N pipelines (goal < 100 MB), against a bare kopf process watching the same CRs.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from apextrader.bus.client import connect
from apextrader.bus.kv import KV
from apextrader.bus.topology import KV_CANARY_WEIGHT, kv_applied_key, kv_bucket
from apextrader.local.nats_server import EmbeddedNats
from apextrader_operator.kube import KubeClient
from tests.operator.harness import NAMESPACE, kmock_config, kube_api, mark_ready, running_operator

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("APEX_BENCH_FULL") == "1"
pytestmark = [pytest.mark.bench, pytest.mark.timeout(1500 if FULL else 180)]


def pipeline(name: str, **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "manifests" / "pipeline.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": NAMESPACE}
    doc["spec"].update(spec)
    return copy.deepcopy(doc)


async def status_of(kube: KubeClient, name: str) -> dict[str, Any]:
    obj = await kube.get("TradingPipeline", NAMESPACE, name)
    return dict((obj or {}).get("status") or {})


def ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


@contextlib.asynccontextmanager
async def controllers(kube: KubeClient, period: float = 0.02) -> AsyncIterator[None]:
    """Mark every StatefulSet/Deployment ready as soon as it exists (kmock runs no controllers)."""
    done: set[str] = set()

    async def loop() -> None:
        while True:
            for kind in ("StatefulSet", "Deployment"):
                for obj in await kube.list(kind, NAMESPACE):
                    key = f"{kind}/{obj['metadata']['name']}/{obj['metadata'].get('uid')}"
                    if key not in done:
                        await mark_ready(kube, kind, obj["metadata"]["name"], obj["spec"].get("replicas", 1))
                        done.add(key)
            await asyncio.sleep(period)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def risk_manager(url: str, name: str) -> AsyncIterator[None]:
    """Echo the canary weight like a running risk manager (watch KV, write applied.*)."""
    nc = await connect(url)
    kv = await KV.open(nc.jetstream(), kv_bucket(name))

    async def echo() -> None:
        async for weight in kv.watch(KV_CANARY_WEIGHT):
            if weight is not None:
                at = time.time()
                await kv.put_json(
                    kv_applied_key("risk-manager", "canary", "bench-0"),
                    {"weight": weight, "state": "progressing", "at": at},
                )

    task = asyncio.create_task(echo())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await nc.close()


async def until(check: Any, within: float = 30.0, every: float = 0.01) -> float:
    """Seconds until `check()` is true (polled every `every` s)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < within:
        if await check():
            return time.perf_counter() - t0
        await asyncio.sleep(every)
    raise AssertionError(f"not reached within {within} s")


async def test_bench_create_to_ready_and_weight_echo(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    runs = 5 if FULL else 1
    create_s, echo_s, api_roundtrip_s = [], [], []
    async with kube_api(tmp_path) as (_, kube):
        config = kmock_config(image="apextrader:bench", nats_url=nats_server.url, metrics_urls=lambda tp: [])
        async with running_operator(config), controllers(kube):
            for i in range(runs):
                name = f"bench-{i}"
                t0 = time.perf_counter()
                await kube.create(pipeline(name))
                await until(lambda n=name: _ready(kube, n))
                create_s.append(time.perf_counter() - t0)
                # the peer: one bare API round trip on the same emulator (the floor of any reconcile)
                t1 = time.perf_counter()
                await kube.get("TradingPipeline", NAMESPACE, name)
                api_roundtrip_s.append(time.perf_counter() - t1)
                async with risk_manager(nats_server.url, name):
                    weight = 20 + i
                    await kube.patch(
                        "TradingPipeline", NAMESPACE, name, {"spec": {"canary": {"weight": weight}}}
                    )
                    echo_s.append(await until(lambda n=name, w=weight: _echoed(kube, n, w)))
                # gone before the next run, so its timer does not load the emulator meanwhile
                await kube.delete("TradingPipeline", NAMESPACE, name)
                await until(lambda n=name: _gone(kube, n))
    c, e, rt = statistics.median(create_s), statistics.median(echo_s), statistics.median(api_roundtrip_s)
    print(
        f"\n[bench operator] create→Ready median {c * 1000:.0f} ms over {runs} (goal < 1000 ms; "
        f"{c / rt:.0f}x one API round trip of {rt * 1000:.1f} ms)\n"
        f"[bench operator] weight edit→applied echoed in status median {e * 1000:.0f} ms (goal < 2000 ms)"
    )


async def _gone(kube: KubeClient, name: str) -> bool:
    return await kube.get("TradingPipeline", NAMESPACE, name) is None


async def _ready(kube: KubeClient, name: str) -> bool:
    return ready(await status_of(kube, name))


async def _echoed(kube: KubeClient, name: str, weight: int) -> bool:
    canary = (await status_of(kube, name)).get("canary", {})
    return canary.get("appliedWeight", {}).get("canary") == weight


BARE_OPERATOR = """
import kopf

@kopf.on.login()
def login(**kw):
    return kopf.login_with_kubeconfig(**kw)

@kopf.on.create("apextrader.io", "v1alpha1", "tradingpipelines")
def created(patch, **_):
    patch.status["phase"] = "Pending"
"""


async def _stop(proc: psutil.Popen) -> None:
    """SIGTERM, then wait without blocking the loop (kmock serves kopf's shutdown requests here)."""
    proc.terminate()
    try:
        await asyncio.to_thread(proc.wait, 30)
    except psutil.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)


def _spawn(args: list[str], env: dict[str, str]) -> psutil.Popen:
    return psutil.Popen([sys.executable, *args], env=env,
                        stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))  # fmt: skip


#: `apex operator` as the chart runs it (its settings from the environment), minus the HTTP ports.
OURS = ["-m", "apextrader.cli", "operator", "-A", "--liveness", "", "--metrics-port", "0"]
#: The bare kopf process of the comparison, on its own module.
KOPF = ["-c", "from kopf.cli import main; main()", "run", "--standalone", "-A"]


async def test_bench_operator_rss_with_many_pipelines(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    count = 50 if FULL else 5
    module = tmp_path / "bare_operator.py"
    module.write_text(BARE_OPERATOR)
    async with kube_api(tmp_path) as (_, kube):
        env = {
            **os.environ,
            "APEX_OPERATOR_NATS_URL": nats_server.url,
            "APEX_OPERATOR_INTERVAL": "5",
            "APEX_SERVER_SIDE_APPLY": "false",  # kmock cannot serve server-side apply
            "PYTHONPATH": os.pathsep.join([str(ROOT / "agents"), str(ROOT / "operator"), str(ROOT)]),
        }
        for i in range(count):
            # small stream limits: JetStream reserves max_bytes per stream on one disk for all pipelines
            limits = {"limits": {"maxAge": "1h", "maxBytes": "4Mi"}, "url": nats_server.url}
            await kube.create(pipeline(f"rss-{i}", canary={"weight": 5}, bus=limits))
        ours = _spawn(OURS, env)
        try:
            async with controllers(kube, period=0.5):  # many objects: do not hog the emulator

                async def all_ready() -> bool:
                    statuses = [await status_of(kube, f"rss-{i}") for i in range(count)]
                    return all(ready(s) for s in statuses)

                took = await until(all_ready, within=900 if FULL else 120, every=1.0)
            await asyncio.sleep(1)
            rss_ours = ours.memory_info().rss
            print(
                f"\n[bench operator] {count} pipelines Ready in {took:.1f} s, RSS {rss_ours / 2**20:.0f} MB"
            )
        finally:
            await _stop(ours)
        bare = _spawn([*KOPF, str(module)], env)
        try:
            await until(lambda: _all_have_phase(kube, count), within=300, every=0.5)
            await asyncio.sleep(1)
            rss_bare = bare.memory_info().rss
        finally:
            await _stop(bare)
    mb = 1024 * 1024
    print(
        f"\n[bench operator] {count} pipelines all Ready in {took:.1f} s; "
        f"operator RSS {rss_ours / mb:.0f} MB (goal < 100 MB); "
        f"bare kopf on the same CRs {rss_bare / mb:.0f} MB (ratio {rss_ours / rss_bare:.2f}x)"
    )


async def _all_have_phase(kube: KubeClient, count: int) -> bool:
    items = await kube.list("TradingPipeline", NAMESPACE)
    return len(items) >= count and all((i.get("status") or {}).get("phase") for i in items)
