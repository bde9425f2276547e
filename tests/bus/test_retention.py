"""Retention on a real nats-server: protected streams refuse a publish when full instead of dropping
an unacked event; a lossy stream drops its oldest data, and then its consumer counts the gap and the
stream accounting counts the discards; replicas change in place on a 3-server cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import api as js_api
from nats.js.errors import APIError

from apextrader.bus.client import connect, ensure_topology, stream_config
from apextrader.bus.consumer import PullConsumer
from apextrader.bus.metrics import STREAM_GAP
from apextrader.bus.middleware import Delivery
from apextrader.bus.streamstats import StreamWatch, discarded
from apextrader.bus.topology import declare, stream_name, subject
from apextrader.contracts import TradingPipeline
from apextrader.local.nats_server import EmbeddedNats, LocalCluster
from tests.bus.helpers import publish_many, snapshot


def _small(pipeline: TradingPipeline, **bus: object) -> TradingPipeline:
    raw = pipeline.model_dump(by_alias=True, mode="json")
    raw["spec"]["bus"] = {**raw["spec"]["bus"], "limits": {"maxAge": "1h", "maxBytes": "64Ki"}, **bus}
    return TradingPipeline.model_validate(raw)


def test_declared_retention_per_stream(example_pipeline: TradingPipeline) -> None:
    topology = declare(example_pipeline.spec, example_pipeline.name)
    for s in topology.streams:
        cfg = stream_config(s)
        if s.domain in ("SIGNALS", "ORDERS", "ALERTS", "DLQ"):
            assert cfg.discard == js_api.DiscardPolicy.NEW and not cfg.max_age, s.name
        else:
            assert cfg.discard == js_api.DiscardPolicy.OLD and cfg.max_age, s.name
        assert cfg.retention == js_api.RetentionPolicy.LIMITS
    gaps = {(c.stream.rsplit("_", 1)[1], c.durable) for c in topology.consumers if c.track_gaps}
    assert ("MARKET", "feature-engineer-shared") in gaps and ("FEATURES", "strategy-builder-stable") in gaps
    assert not any(d in ("SIGNALS", "ORDERS") for d, _ in gaps)


async def test_a_full_orders_stream_refuses_instead_of_dropping(
    nats_server: EmbeddedNats, example_pipeline: TradingPipeline
) -> None:
    tp = _small(example_pipeline)
    nc = await connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await ensure_topology(js, declare(tp.spec, tp.name))
    subj = subject(tp.name, "order.filled", "stable")
    accepted, refused = 0, 0
    for i in range(400):
        try:
            await js.publish(subj, b"x" * 512, headers={"Nats-Msg-Id": f"fill-{i}"})
            accepted += 1
        except APIError:
            refused += 1
    info = await js.stream_info(stream_name(tp.name, "ORDERS"))
    await nc.close()
    assert refused > 0 and accepted > 0
    assert info.state.messages == accepted and info.state.first_seq == 1  # nothing was dropped
    assert discarded(info) == 0


async def test_a_lossy_stream_discards_and_the_consumer_counts_the_gap(
    nats_server: EmbeddedNats, example_pipeline: TradingPipeline
) -> None:
    tp = _small(example_pipeline)
    topology = declare(tp.spec, tp.name)
    nc = await connect(nats_server.url)
    js = nc.jetstream(timeout=5)
    await ensure_topology(js, topology)
    await publish_many(js, [snapshot(i) for i in range(300)])
    info = await js.stream_info(stream_name(tp.name, "MARKET"))
    lost = discarded(info)
    assert lost > 0 and lost == info.state.first_seq - 1
    assert (await StreamWatch().observe(js, topology))[info.config.name] == lost
    decl = next(
        c for c in topology.consumers if c.durable == "feature-engineer-shared" and "MARKET" in c.stream
    )
    before = STREAM_GAP.labels("feature-engineer", decl.stream)._value.get()
    seen: list[int] = []

    async def handle(msg: object) -> Delivery:
        seen.append(msg.metadata.sequence.stream)  # type: ignore[attr-defined]
        await msg.ack()  # type: ignore[attr-defined]
        return None  # type: ignore[return-value]

    consumer = PullConsumer(js, decl, handle, batch=64)
    await consumer.bind()
    task = asyncio.create_task(consumer.run())
    for _ in range(100):
        if len(seen) >= info.state.messages:
            break
        await asyncio.sleep(0.05)
    consumer.stop()
    await task
    await nc.close()
    assert consumer.gaps == lost  # each discarded snapshot, no more
    assert STREAM_GAP.labels("feature-engineer", decl.stream)._value.get() - before == lost
    assert len(seen) + lost == info.state.last_seq  # received + discarded = published


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    bus = LocalCluster(tmp_path, 3, name="apex-test").start()
    try:
        yield bus
    finally:
        bus.stop()


async def test_stream_replicas_change_in_place(
    cluster: LocalCluster, example_pipeline: TradingPipeline
) -> None:
    one = declare(_small(example_pipeline, managed={"replicas": 3}, streamReplicas=1).spec, "btc-perp")
    three = declare(_small(example_pipeline, managed={"replicas": 3}).spec, "btc-perp")
    assert {s.replicas for s in three.streams} == {3} and three.replicas == 3
    nc = await connect(",".join(cluster.urls))
    js = nc.jetstream(timeout=10)
    await ensure_topology(js, one)
    await publish_many(js, [snapshot(i) for i in range(20)])
    created = {
        (c.stream, c.durable): (await js.consumer_info(c.stream, c.durable)).created for c in one.consumers
    }
    await ensure_topology(js, three)  # a changed spec on a running pipeline
    for s in three.streams:
        info = await js.stream_info(s.name)
        assert info.config.num_replicas == 3, s.name
    market = await js.stream_info(stream_name("btc-perp", "MARKET"))
    assert market.state.messages == 20  # moved, not recreated
    kv = await js.stream_info(f"KV_{three.kv_bucket}")
    assert kv.config.num_replicas == 3
    for c in three.consumers:  # consumers follow their stream (replicas 0 = the stream's)
        for _ in range(100):
            ci = await js.consumer_info(c.stream, c.durable)
            if ci.cluster is not None and len(ci.cluster.replicas or []) == 2:
                break
            await asyncio.sleep(0.1)
        assert ci.cluster is not None and len(ci.cluster.replicas or []) == 2, c.durable
        assert ci.created == created[(c.stream, c.durable)], c.durable  # the same durable, not a new one
    await nc.close()
