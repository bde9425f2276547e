"""Overload without collapse on a real nats-server: a consumer that falls behind a burst of
forming-bar snapshots handles every closed bar in order and the latest forming snapshot of each
market, and acks the superseded ones unhandled, counted as shed (docs/bus.md, "Overload")."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from apextrader.bus.client import ensure_topology
from apextrader.bus.coalesce import coalesce_key
from apextrader.bus.metrics import REGISTRY, MetricName
from apextrader.bus.pipelined import Outgoing
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import Topology, stream_name, subject
from apextrader.contracts import Bar, Envelope, MarketSnapshot, MarketSnapshotEvent
from tests.bus.helpers import T0, RunningConsumer, chain_config, consumer_decl, fast_topology, wait_settled

MARKETS = ("binance", "bybit")
AGENT = "feature-engineer"


def _snap(exchange: str, bar: int, seq: int, *, closed: bool) -> MarketSnapshotEvent:
    price = 100.0 + seq % 10
    data = MarketSnapshot(
        exchange=exchange,  # type: ignore[arg-type]
        symbol="BTC/USDT:USDT",
        timeframe="1m",
        bar=Bar(open_time=T0 + timedelta(minutes=bar), open=price, high=price + 1, low=price - 1,
                close=price, volume=1.0),
        seq=seq,
        closed=closed,
    )  # fmt: skip
    return MarketSnapshotEvent.new(data, pipeline="btc-perp", source_agent="market-scanner")


def burst(bars: int, ticks: int) -> list[MarketSnapshotEvent]:
    """Per bar: `ticks` forming snapshots of each market interleaved, then each market's closed bar;
    it ends on the forming snapshots of one more bar."""
    out: list[MarketSnapshotEvent] = []
    seq = 0
    for bar in range(bars + 1):
        for _ in range(ticks):
            for ex in MARKETS:
                seq += 1
                out.append(_snap(ex, bar, seq, closed=False))
        if bar < bars:
            for ex in MARKETS:
                seq += 1
                out.append(_snap(ex, bar, seq, closed=True))
    return out


async def publish(js: JetStreamContext, events: list[MarketSnapshotEvent]) -> None:
    """Through the scanner's path: pipelined, forming bars marked coalescible."""
    out = [
        Outgoing(
            subject(e.pipeline, e.type, e.track), e.to_json(), e.id, e.correlation_id, e.type,
            None if e.data.closed else coalesce_key(e.data.exchange, e.data.symbol, e.data.timeframe),
        )
        for e in events
    ]  # fmt: skip
    await Publisher(js).publish_many(out)


def shed_metric() -> float:
    return REGISTRY.get_sample_value(MetricName.SNAPSHOTS_SHED, {"agent": AGENT}) or 0.0


def _key(e: MarketSnapshotEvent) -> tuple[str, str, str]:
    return (e.data.exchange, e.data.symbol, e.data.timeframe)


async def test_a_consumer_behind_a_burst_sheds_superseded_forming_snapshots(
    nc: NatsClient, topology: Topology
) -> None:
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, AGENT)
    events = burst(bars=6, ticks=10)
    handled: list[str] = []

    async def slow(ev: Envelope) -> None:
        handled.append(ev.id)
        await asyncio.sleep(0.01)  # slower than the burst arrives: the consumer falls behind

    before = shed_metric()
    cfg = chain_config(js, topo, decl, {"market.snapshot": slow})
    async with RunningConsumer(js, decl, cfg) as running:
        await publish(js, events)
        await wait_settled(js, decl)
    consumer = running.consumer

    by_id = {e.id: e for e in events}
    kept = [by_id[i] for i in handled]
    shed = [e for e in events if e.id not in set(handled)]
    closed = [e.id for e in events if e.data.closed]
    assert [e.id for e in kept if e.data.closed] == closed  # every closed bar, in order
    assert [e.id for e in kept] == [e.id for e in events if e.id in set(handled)]  # order kept
    for ex in MARKETS:  # the latest forming snapshot of each market was handled
        last = [e for e in events if e.data.exchange == ex and not e.data.closed][-1]
        assert last.id in handled
    for e in shed:  # only forming snapshots, each superseded by a later forming one of its market
        assert not e.data.closed
        later = events[events.index(e) + 1 :]
        assert any(not x.data.closed and _key(x) == _key(e) for x in later)
    assert shed, "the consumer never fell behind: nothing to coalesce"
    assert len(handled) == len(set(handled)) and len(handled) + len(shed) == len(events)
    assert consumer.shed == len(shed) == shed_metric() - before
    info = await js.consumer_info(decl.stream, decl.durable)
    assert info.num_pending == 0 and info.num_ack_pending == 0 and info.num_redelivered == 0
    assert info.ack_floor.stream_seq == len(events)  # every message acked, the shed ones too
    dlq = await js.stream_info(stream_name("btc-perp", "DLQ"))
    assert dlq.state.messages == 0


async def test_a_consumer_that_keeps_up_sheds_nothing(nc: NatsClient, topology: Topology) -> None:
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, AGENT)
    events = burst(bars=2, ticks=3)
    handled: list[str] = []

    async def fast(ev: Envelope) -> None:
        handled.append(ev.id)

    cfg = chain_config(js, topo, decl, {"market.snapshot": fast})
    async with RunningConsumer(js, decl, cfg) as running:
        for e in events:  # one at a time, each handled before the next: never a backlog
            await publish(js, [e])
            await wait_settled(js, decl)
    assert handled == [e.id for e in events]
    assert running.consumer.shed == 0


async def test_a_consumer_that_sheds_widens_its_next_fetch(nc: NatsClient, topology: Topology) -> None:
    """With fetches of 4 and two markets interleaved at most half could be shed; the wider window
    (`coalesce.WINDOW`) after the first shed coalesces nearly the whole backlog."""
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, AGENT)
    events = burst(bars=0, ticks=200)  # 400 forming snapshots of two markets, a backlog from the start
    await publish(js, events)
    handled: list[str] = []

    async def handle(ev: Envelope) -> None:
        handled.append(ev.id)

    cfg = chain_config(js, topo, decl, {"market.snapshot": handle})
    async with RunningConsumer(js, decl, cfg, batch=4) as running:
        await wait_settled(js, decl)
    assert running.consumer.shed + len(handled) == len(events)
    assert running.consumer.shed > len(events) * 3 // 4
    assert events[-1].id in handled and events[-2].id in handled
