"""Handlers slower than the ack wait keep their message (in-progress heartbeats); messages JetStream
gave up on after max_deliver unacknowledged deliveries still reach the DLQ (advisory listener)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from nats.aio.client import Client as NatsClient

from apextrader.bus import dlq
from apextrader.bus.advisories import watch_max_deliveries
from apextrader.bus.client import ensure_topology
from apextrader.bus.topology import Topology, stream_name
from apextrader.contracts import Envelope
from tests.bus.helpers import (
    RunningConsumer,
    chain_config,
    consumer_decl,
    fast_topology,
    publish_many,
    snapshot,
    wait_settled,
    wait_until,
)


def short_ack_wait(topology: Topology, ack_wait_s: float, max_deliver: int) -> Topology:
    topo = fast_topology(topology, max_deliver=max_deliver)
    return dataclasses.replace(
        topo, consumers=[dataclasses.replace(c, ack_wait_s=ack_wait_s) for c in topo.consumers]
    )


async def test_slow_handler_is_not_redelivered(nc: NatsClient, topology: Topology) -> None:
    js = nc.jetstream()
    topo = short_ack_wait(topology, 0.6, 3)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    calls = 0

    async def slow(ev: Envelope) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(2.0)  # > 3 ack waits

    await publish_many(js, [snapshot(1)])
    async with RunningConsumer(js, decl, chain_config(js, topo, decl, {"market.snapshot": slow})):
        await wait_settled(js, decl, limit_s=10)
    info = await js.consumer_info(decl.stream, decl.durable)
    assert calls == 1 and info.num_redelivered == 0


async def test_message_nobody_acks_reaches_dlq_as_max_deliver(nc: NatsClient, topology: Topology) -> None:
    js = nc.jetstream()
    topo = short_ack_wait(topology, 0.3, 2)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    await watch_max_deliveries(nc, "btc-perp", decl)
    await watch_max_deliveries(nc, "btc-perp", decl)  # a second replica: still one entry
    ev = snapshot(1)
    await publish_many(js, [ev])
    sub = await js.pull_subscribe_bind(durable=decl.durable, stream=decl.stream)
    for _ in range(2):  # a consumer that dies on it every time: fetched, never acked
        (msg,) = await sub.fetch(1, timeout=5)
        assert msg.data == ev.to_json()
    # The restarted consumer pulls again: JetStream does not deliver a third time, it gives up and
    # emits the advisory (it checks on the next pull request).
    with pytest.raises(asyncio.TimeoutError):
        await sub.fetch(1, timeout=1.5)
    await asyncio.sleep(0.3)
    entries = [e async for e in dlq.iter_entries(js, stream_name("btc-perp", "DLQ"))]
    assert len(entries) == 1
    (entry,) = entries
    assert entry.reason == "max_deliver" and entry.deliveries == 2 and entry.data == ev.to_json()
    assert entry.event_id == ev.id and entry.original_subject.endswith("market.snapshot.shared")


async def test_consumer_reports_unbound_while_its_durable_is_missing(
    nc: NatsClient, topology: Topology
) -> None:
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    handled: list[str] = []

    async def handle(ev: Envelope) -> None:
        handled.append(ev.id)

    async with RunningConsumer(js, decl, chain_config(js, topo, decl, {"market.snapshot": handle})) as rc:
        assert rc.consumer.bound
        await js.delete_consumer(decl.stream, decl.durable)
        await wait_until(lambda: not rc.consumer.bound, limit_s=10, what="unbound")
        await ensure_topology(js, topo)  # the operator puts it back
        await wait_until(lambda: rc.consumer.bound, limit_s=10, what="bound again")
        ev = snapshot(1)
        await publish_many(js, [ev])
        await wait_until(lambda: handled == [ev.id], limit_s=10, what="handled after rebind")
