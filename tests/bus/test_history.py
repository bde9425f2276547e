"""`history()`: the last N events of a type, oldest first, whatever else the stream holds."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient

from apextrader.bus.history import history
from apextrader.bus.topology import Topology
from apextrader.contracts import MarketSnapshotEvent
from tests.bus.helpers import publish_many, snapshot


async def test_history_returns_the_last_n_of_a_type_oldest_first(nc: NatsClient, bus: Topology) -> None:
    js = nc.jetstream()
    btc = [snapshot(i) for i in range(3000)]
    eth = [snapshot(10_000 + i, symbol="ETH/USDT:USDT") for i in range(50)]
    # ETH first, then many BTC: asking for more than the newest window holds makes history() widen
    # its window backwards until it reaches the start of the stream.
    await publish_many(js, eth, window=1)
    await publish_many(js, btc, window=1)
    got = [e async for e in history(js, "btc-perp", "market.snapshot", last=10)]
    assert [e.id for e in got] == [e.id for e in btc[-10:]]
    assert all(isinstance(e, MarketSnapshotEvent) for e in got)
    everything = [e async for e in history(js, "btc-perp", "market.snapshot", last=5000)]
    assert [e.id for e in everything] == [e.id for e in eth + btc]
    assert [e async for e in history(js, "btc-perp", "market.snapshot", last=5, track="canary")] == []
    assert [e async for e in history(js, "btc-perp", "order.filled", last=5)] == []
