"""A consumer with a backlog pipelines (bus/consumer.py, `Chain.begin`): the next message is handled
once this one's outputs are sent, not stored; every input is acked only after its own outputs'
PubAcks, and the outputs are stored in the order of their inputs. On a real nats-server."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NatsClient

from apextrader.bus.client import ensure_topology
from apextrader.bus.consumer import PullConsumer
from apextrader.bus.middleware import build_chain
from apextrader.bus.publisher import Publisher, Sent
from apextrader.bus.topology import Topology, stream_name
from apextrader.contracts import Envelope, FeaturesComputed, FeaturesComputedEvent, MarketSnapshot
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

FEATURES = {"atr14": 1.0}


def _features_of(ev: Envelope) -> Envelope:
    snap = ev.data
    assert isinstance(snap, MarketSnapshot)
    data = FeaturesComputed(exchange=snap.exchange, symbol=snap.symbol, timeframe=snap.timeframe,
                            bar=snap.bar, features=FEATURES)  # fmt: skip
    return ev.derive(FeaturesComputedEvent, data, source_agent="feature-engineer")


class HeldPublisher(Publisher):
    """Holds every PubAck wait until released, so the test sees what runs meanwhile."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.release = asyncio.Event()
        self.confirming = 0

    async def confirm(self, sent: Sent) -> None:
        self.confirming += 1
        await self.release.wait()
        await super().confirm(sent)


async def test_a_backlog_is_handled_while_outputs_are_stored_and_acked_after_them(
    nc: NatsClient, topology: Topology
) -> None:
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    events = [snapshot(i) for i in range(40)]
    await publish_many(js, events)
    handled: list[str] = []

    async def handle(ev: Envelope) -> list[Envelope]:
        handled.append(ev.id)
        return [_features_of(ev)]

    publisher = HeldPublisher(js)
    cfg = chain_config(js, topo, decl, {"market.snapshot": handle}, publisher=publisher)
    async with RunningConsumer(js, decl, cfg) as running:
        # more than one input handled while no PubAck has been looked at: pipelined
        await wait_until(lambda: len(handled) > 1 and publisher.confirming > 1, what="pipelined handling")
        info = await js.consumer_info(decl.stream, decl.durable)
        assert info.ack_floor.stream_seq == 0  # nothing acked before its outputs' PubAcks
        publisher.release.set()
        await wait_settled(js, decl)
        assert running.consumer.handled == len(events)
    assert handled == [e.id for e in events]
    stream = stream_name(topo.pipeline, "FEATURES")
    stored = []
    for seq in range(1, len(events) + 1):
        msg = await js.get_msg(stream, seq)
        stored.append(msg.headers["Nats-Msg-Id"] if msg.headers else None)
    assert stored == [_features_of(e).id for e in events]  # in the order of their inputs
    assert (await js.stream_info(stream)).state.messages == len(events)


async def test_a_cancelled_consumer_leaves_no_pull_open_that_would_strand_messages(
    nc: NatsClient, topology: Topology
) -> None:
    """A consumer task cancelled (e.g. after the stop timeout) drops its open pull requests with its
    subscription; otherwise the server would go on delivering into a queue nobody reads, and those
    messages would wait for the ack wait before anyone else got them."""
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    limit_s = 3.0  # 20 messages take milliseconds; a stranded one would take the ack wait
    assert decl.ack_wait_s > limit_s
    handled: list[str] = []

    async def handle(ev: Envelope) -> None:
        handled.append(ev.id)

    first = RunningConsumer(js, decl, chain_config(js, topo, decl, {"market.snapshot": handle}))
    await first.consumer.bind()
    task = asyncio.create_task(first.consumer.run())
    await wait_until(lambda: first.consumer._credit > 0, what="the first consumer's pull request")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    events = [snapshot(i) for i in range(20)]
    async with RunningConsumer(js, decl, chain_config(js, topo, decl, {"market.snapshot": handle})):
        await publish_many(js, events)
        await wait_until(lambda: len(handled) == len(events), limit_s=limit_s, what="every message handled")
    assert handled == [e.id for e in events]


async def test_an_idle_consumer_stops_at_once(nc: NatsClient, topology: Topology) -> None:
    """`stop()` ends the wait for the next delivery (otherwise it lasts up to three heartbeats)."""
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")

    async def handle(ev: Envelope) -> None:
        return None

    consumer = PullConsumer(js, decl, build_chain(chain_config(js, topo, decl, {"market.snapshot": handle})),
                            fetch_timeout=1.0)  # fmt: skip
    task = asyncio.create_task(consumer.run())
    await wait_until(lambda: consumer._waiting is not None, what="the consumer waiting for a delivery")
    consumer.stop()
    await asyncio.wait_for(task, 1.0)  # the wait had ~3 s to go
    assert not consumer.bound
