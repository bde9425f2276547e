"""The bus on a real nats-server: topology, publish/consume through the chain, DLQ, KV, history."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NatsClient

from apextrader.bus import dlq, metrics
from apextrader.bus.client import ensure_topology
from apextrader.bus.errors import Reject
from apextrader.bus.history import history
from apextrader.bus.kv import KV
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import KV_CANARY_WEIGHT, Topology, stream_name, subject
from apextrader.contracts import (
    Envelope,
    Features,
    FeaturesComputed,
    FeaturesComputedEvent,
    MarketSnapshotEvent,
)
from apextrader.local.nats_server import EmbeddedNats
from tests.bus.helpers import (
    RunningConsumer,
    chain_config,
    consumer_decl,
    fast_topology,
    publish_many,
    snapshot,
    wait_settled,
)


async def test_ensure_topology_is_idempotent_and_creates_everything(
    nc: NatsClient, topology: Topology
) -> None:
    js = nc.jetstream()
    await ensure_topology(js, topology)
    await ensure_topology(js, topology)  # second run: no error, nothing duplicated
    names = {s.config.name for s in await js.streams_info()}
    assert {s.name for s in topology.streams} <= names
    for c in topology.consumers:
        info = await js.consumer_info(c.stream, c.durable)
        assert info.config.max_deliver == c.max_deliver
        assert info.config.ack_wait == c.ack_wait_s
    await js.key_value(topology.kv_bucket)


async def test_nats_server_fixture_restart_keeps_jetstream_state(
    nats_server: EmbeddedNats, nc: NatsClient, bus: Topology
) -> None:
    js = nc.jetstream()
    await publish_many(js, [snapshot(i) for i in range(5)])
    url = nats_server.url
    nats_server.restart()
    assert nats_server.url == url
    await asyncio.sleep(0.5)  # the client reconnects by itself
    info = await js.stream_info(stream_name("btc-perp", "MARKET"))
    assert info.state.messages == 5


async def test_publish_deduplicates_by_event_id(nc: NatsClient, bus: Topology) -> None:
    js = nc.jetstream()
    pub = Publisher(js)
    ev = snapshot(1)
    first = await pub.publish(ev)
    again = await pub.publish(ev)
    assert not first.duplicate and again.duplicate
    info = await js.stream_info(stream_name("btc-perp", "MARKET"))
    assert info.state.messages == 1


async def test_handler_outputs_are_published_then_input_acked(nc: NatsClient, topology: Topology) -> None:
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    seen: list[str] = []

    async def handle(ev: Envelope) -> list[Envelope]:
        assert isinstance(ev, MarketSnapshotEvent)
        seen.append(ev.id)
        data = FeaturesComputed(
            exchange="binance", symbol=ev.data.symbol, timeframe="1m", bar=ev.data.bar, features=Features()
        )
        return [ev.derive(FeaturesComputedEvent, data, source_agent="feature-engineer")]

    events = [snapshot(i) for i in range(20)]
    await publish_many(js, events)
    async with RunningConsumer(js, decl, chain_config(js, topo, decl, {"market.snapshot": handle})):
        await wait_settled(js, decl)
    assert seen == [e.id for e in events]  # in order
    feats = await js.stream_info(stream_name("btc-perp", "FEATURES"))
    assert feats.state.messages == 20
    got = [e async for e in history(js, "btc-perp", "features.computed", last=5)]
    assert [g.causation_id for g in got] == [e.id for e in events[-5:]]
    assert all(g.correlation_id == g.causation_id for g in got)


async def test_reject_goes_to_dlq_at_once_with_reason(nc: NatsClient, topology: Topology) -> None:
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    calls = 0

    async def handle(ev: Envelope) -> None:
        nonlocal calls
        calls += 1
        raise Reject("invalid", "bar from the future")

    before = metrics.DLQ.labels("feature-engineer", "shared", decl.stream, "invalid")._value.get()
    await publish_many(js, [snapshot(1)])
    async with RunningConsumer(js, decl, chain_config(js, topo, decl, {"market.snapshot": handle})):
        await wait_settled(js, decl)
    assert calls == 1  # no retries
    entries = [e async for e in dlq.iter_entries(js, stream_name("btc-perp", "DLQ"))]
    assert len(entries) == 1
    assert entries[0].reason == "invalid" and "bar from the future" in entries[0].error
    assert entries[0].deliveries == 1 and entries[0].agent == "feature-engineer"
    assert entries[0].original_subject == subject("btc-perp", "market.snapshot", "shared")
    after = metrics.DLQ.labels("feature-engineer", "shared", decl.stream, "invalid")._value.get()
    assert after == before + 1


async def test_kv_json_and_watch(nc: NatsClient, bus: Topology) -> None:
    kv = await KV.open(nc.jetstream(), bus.kv_bucket)
    assert await kv.get_json(KV_CANARY_WEIGHT) is None
    await kv.put_json(KV_CANARY_WEIGHT, 5)
    values: list[object] = []

    async def watch() -> None:
        async for v in kv.watch(KV_CANARY_WEIGHT):
            values.append(v)
            if v == 25:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    await kv.put_json(KV_CANARY_WEIGHT, 25)
    await asyncio.wait_for(task, 5)
    assert values == [5, 25]
    assert await kv.get_json(KV_CANARY_WEIGHT) == 25
