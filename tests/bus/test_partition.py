"""A network partition of a 3-server bus: the server leading ORDERS is cut off from the other two
(every route between them runs through a TCP forwarder that the test cuts), while one client
publishes orders through the majority and one through the isolated server.

No split brain: the isolated server acknowledges nothing while it is alone (a minority cannot commit),
the majority elects a leader and goes on storing, and after the partition heals the isolated
server catches up and every acknowledged order is stored exactly once, none lost (the publisher's
retries with the same `Nats-Msg-Id` are de-duplicated)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

from nats.js import JetStreamContext

from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import declare, stream_name, subject
from apextrader.contracts import TradingPipeline
from apextrader.local.nats_server import EmbeddedNats, LocalCluster
from tests.fixtures.tcp_proxy import TcpProxy

SIZE = 3
RATE_HZ = 50.0
#: Gossip must not teach a server the others' real route ports: each advertises a port where
#: nothing listens, so every route is one of the configured forwarders.
NOWHERE = "127.0.0.1:1"


def _route_through(server: EmbeddedNats, routes: list[str]) -> None:
    assert server.cluster is not None
    name, server_name, port, _ = server.cluster
    server.cluster = (name, server_name, port, routes)
    plain = server._config

    def config() -> str:
        return plain().replace("  routes:", f'  advertise: "{NOWHERE}"\n  routes:', 1)

    server._config = config  # type: ignore[method-assign]


async def _proxied_cluster(root: Path) -> tuple[LocalCluster, dict[tuple[int, int], TcpProxy]]:
    """A cluster whose route from server i to server j goes through forwarder (i, j)."""
    cluster = LocalCluster(root, SIZE, name="part")
    ports = [s.cluster[2] for s in cluster.servers if s.cluster is not None]
    proxies = {(i, j): await TcpProxy(ports[j]).start() for i in range(SIZE) for j in range(SIZE) if i != j}
    for i, server in enumerate(cluster.servers):
        _route_through(
            server, [f"nats-route://127.0.0.1:{proxies[i, j].port}" for j in range(SIZE) if j != i]
        )
    await asyncio.to_thread(cluster.start, 60.0)
    return cluster, proxies


async def _leader(js: JetStreamContext, stream: str) -> str:
    info = await js.stream_info(stream)
    assert info.cluster is not None and info.cluster.leader
    return info.cluster.leader


async def _pump(
    publisher: Publisher, subj: str, prefix: str, stop: asyncio.Event, acked: dict[str, float]
) -> None:
    i = 0
    while not stop.is_set():
        msg_id = f"{prefix}-{i}"
        await publisher._send(subj, b"{}", {"Nats-Msg-Id": msg_id})
        acked[msg_id] = time.monotonic()
        i += 1
        await asyncio.sleep(1 / RATE_HZ)


def _replica_last_seq(server: EmbeddedNats, stream: str) -> int:
    """The last sequence of the server's own replica of the stream (its monitoring port)."""
    url = f"http://{server.host}:{server.monitor_port}/jsz?accounts=true&streams=true"
    with urllib.request.urlopen(url, timeout=5) as resp:
        jsz = json.load(resp)
    for account in jsz.get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                return int(detail["state"]["last_seq"])
    raise AssertionError(f"{stream} has no replica on {server.url}")


async def _stored_ids(js: JetStreamContext, stream: str, subj: str, count: int) -> list[str]:
    sub = await js.pull_subscribe(subj, stream=stream)
    ids: list[str] = []
    while len(ids) < count:
        for msg in await sub.fetch(min(256, count - len(ids)), timeout=5):
            ids.append((msg.headers or {})["Nats-Msg-Id"])
            await msg.ack()
    await sub.unsubscribe()
    return ids


async def test_an_isolated_leader_acknowledges_nothing_and_the_majority_loses_nothing(
    tmp_path: Path, example_pipeline: TradingPipeline
) -> None:
    raw = example_pipeline.model_dump(by_alias=True, mode="json")
    raw["spec"]["bus"] = {"managed": {"replicas": SIZE}, "streamReplicas": SIZE}
    tp = TradingPipeline.model_validate(raw)
    stream = stream_name(tp.name, "ORDERS")
    subj = subject(tp.name, "order.filled", "stable")
    cluster, proxies = await _proxied_cluster(tmp_path)
    clients = []
    try:
        admin = await connect(",".join(cluster.urls), name="partition-admin")
        clients.append(admin)
        await ensure_topology(admin.jetstream(timeout=10), declare(tp.spec, tp.name))
        leader = await _leader(admin.jetstream(timeout=5), stream)
        alone = next(i for i, s in enumerate(cluster.servers) if s.cluster and s.cluster[1] == leader)
        other = (alone + 1) % SIZE
        minority = await connect(cluster.servers[alone].url, name="on-the-isolated-server")
        majority = await connect(cluster.servers[other].url, name="on-the-majority")
        clients += [minority, majority]

        stop = asyncio.Event()
        acked_minority: dict[str, float] = {}
        acked_majority: dict[str, float] = {}
        pumps = [
            asyncio.create_task(
                _pump(
                    Publisher(minority.jetstream(), ack_timeout=0.5, give_up_s=120),
                    subj,
                    "min",
                    stop,
                    acked_minority,
                )
            ),
            asyncio.create_task(
                _pump(
                    Publisher(majority.jetstream(), ack_timeout=0.5, give_up_s=120),
                    subj,
                    "maj",
                    stop,
                    acked_majority,
                )
            ),
        ]
        await asyncio.sleep(1.5)
        cut_at = time.monotonic()
        for (i, j), proxy in proxies.items():
            if alone in (i, j):
                await proxy.cut()
        # until the majority has elected a leader and stored a good run (an election takes a few
        # seconds, more on a loaded machine), at most 30 s
        deadline = cut_at + 30.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if sum(t > cut_at + 0.5 for t in list(acked_majority.values())) > 50:
                break
        during_minority = [t for t in acked_minority.values() if t > cut_at + 0.5]
        during_majority = [t for t in acked_majority.values() if t > cut_at + 0.5]
        majority_leader = await _leader(majority.jetstream(timeout=5), stream)
        healed_at = time.monotonic()
        for proxy in proxies.values():
            if proxy.cut_off:
                await proxy.heal()
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*pumps), 120)
        await asyncio.to_thread(cluster.wait_healthy, 60.0)

        assert during_minority == []  # nothing acknowledged by a server without its quorum
        assert len(during_majority) > 50  # the majority elected a leader and kept storing
        assert majority_leader != leader
        assert [t for t in acked_minority.values() if t > healed_at]  # the isolated side resumed
        info = await admin.jetstream(timeout=5).stream_info(stream)
        acked = acked_minority.keys() | acked_majority.keys()
        assert info.state.messages == len(acked_minority) + len(acked_majority)
        stored = await _stored_ids(admin.jetstream(timeout=5), stream, subj, info.state.messages)
        assert sorted(stored) == sorted(acked)  # every acknowledged order exactly once
        # The isolated server has caught up: its own replica ends where the leader's does.
        replica = await asyncio.to_thread(_replica_last_seq, cluster.servers[alone], stream)
        assert replica == info.state.last_seq
    finally:
        for nc in clients:
            await nc.close()
        for proxy in proxies.values():
            await proxy.cut()
        await asyncio.to_thread(cluster.stop)
