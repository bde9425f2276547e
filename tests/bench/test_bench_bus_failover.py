"""The trading pause during a leader election (printed, never asserted on timing): a 3-server local
cluster, the ORDERS stream with 3 replicas, orders published at a steady pace through the
`Publisher` (retries with the same Nats-Msg-Id); `kill -9` of the stream's leader. Reported: the
longest gap between two stored orders around the kill (the pause a trader sees), the time until a
new leader answers, and that no order was lost or stored twice. Smoke-sized (1 election) in the
normal suite; APEX_BENCH_FULL=1 repeats it 5 times."""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from pathlib import Path

from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import declare, stream_name, subject
from apextrader.contracts import TradingPipeline
from apextrader.local.nats_server import LocalCluster

RATE_HZ = 200.0


async def _election(
    cluster: LocalCluster, tp: TradingPipeline, round_no: int
) -> tuple[float, float, int, int]:
    nc = await connect(",".join(cluster.urls), name="bench-failover")
    js = nc.jetstream(timeout=5)
    stream = stream_name(tp.name, "ORDERS")
    publisher = Publisher(js, ack_timeout=0.5)
    subj = subject(tp.name, "order.filled", "stable")
    stored_at: list[float] = []
    sent = 0
    stop = asyncio.Event()

    async def pump() -> None:
        nonlocal sent
        while not stop.is_set():
            i = sent
            sent += 1
            await publisher._send(subj, b"{}", {"Nats-Msg-Id": f"r{round_no}-{i}"})
            stored_at.append(time.monotonic())
            await asyncio.sleep(1 / RATE_HZ)

    task = asyncio.create_task(pump())
    await asyncio.sleep(1.0)
    info = await js.stream_info(stream)
    assert info.cluster is not None and info.cluster.leader
    leader = next(s for s in cluster.servers if s.cluster and s.cluster[1] == info.cluster.leader)
    killed_at = time.monotonic()
    leader.stop(kill=True)
    new_leader_after = float("nan")
    fast = nc.jetstream(timeout=0.5)
    while True:
        try:
            info = await fast.stream_info(stream)
            if info.cluster and info.cluster.leader and info.cluster.leader != leader.cluster[1]:  # type: ignore[index]
                new_leader_after = time.monotonic() - killed_at
                break
        except Exception:  # no leader yet: the request times out
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    stop.set()
    await task
    around = [t for t in stored_at if t > killed_at - 1.0]
    pause = max(b - a for a, b in itertools.pairwise(around))
    state = (await js.stream_info(stream)).state
    await nc.close()
    leader.start()
    cluster.wait_healthy()
    return pause, new_leader_after, sent, int(state.messages)


async def test_bench_trading_pause_during_leader_election(
    tmp_path: Path, example_pipeline: TradingPipeline
) -> None:
    raw = example_pipeline.model_dump(by_alias=True, mode="json")
    raw["spec"]["bus"] = {"managed": {"replicas": 3}}
    tp = TradingPipeline.model_validate(raw)
    rounds = 5 if os.environ.get("APEX_BENCH_FULL") else 1
    cluster = LocalCluster(tmp_path, 3, name="bench").start()
    try:
        nc = await connect(",".join(cluster.urls))
        await ensure_topology(nc.jetstream(timeout=10), declare(tp.spec, tp.name))
        await nc.close()
        pauses, elections, total_sent, stored = [], [], 0, 0
        for r in range(rounds):
            pause, election, sent, stored = await _election(cluster, tp, r)
            pauses.append(pause)
            elections.append(election)
            total_sent += sent
    finally:
        cluster.stop()
    print(
        f"\nleader election on R3 ORDERS ({rounds}x, {RATE_HZ:.0f} orders/s): trading pause "
        f"median {statistics.median(pauses) * 1000:.0f} ms, max {max(pauses) * 1000:.0f} ms; "
        f"new leader after median {statistics.median(elections) * 1000:.0f} ms; "
        f"{total_sent} sent, {stored} stored"
    )
    assert stored == total_sent  # none lost, none twice (the de-dup window absorbed every retry)
