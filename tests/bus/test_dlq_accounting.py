"""Must hold: 10,000 events, a handler failing on a chosen 1 %: published == acked + DLQ, every DLQ
entry carries the original bytes and the error, and replaying the DLQ makes them succeed."""

from __future__ import annotations

import random

from nats.aio.client import Client as NatsClient

from apextrader.bus import dlq
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
)

N = 10_000


async def test_ten_thousand_events_one_percent_failing(nc: NatsClient, topology: Topology) -> None:
    js = nc.jetstream()
    topo = fast_topology(topology, max_deliver=3, backoff_s=0.02)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    events = [snapshot(i) for i in range(N)]
    failing = {events[i].id for i in random.Random(7).sample(range(N), N // 100)}
    acked: list[str] = []
    attempts: dict[str, int] = {}
    broken = True

    async def handle(ev: Envelope) -> None:
        attempts[ev.id] = attempts.get(ev.id, 0) + 1
        if broken and ev.id in failing:
            raise RuntimeError(f"chosen failure for {ev.id}")
        acked.append(ev.id)

    cfg = chain_config(js, topo, decl, {"market.snapshot": handle})
    published = await publish_many(js, events)
    assert published == N
    async with RunningConsumer(js, decl, cfg, batch=256):
        await wait_settled(js, decl, limit_s=90)

    dlq_stream = stream_name("btc-perp", "DLQ")
    entries = [e async for e in dlq.iter_entries(js, dlq_stream)]
    assert published == len(acked) + len(entries)
    assert len(set(acked)) == len(acked) == N - len(failing)
    by_id = {e.id: e for e in events}
    assert {e.event_id for e in entries} == failing
    for entry in entries:
        assert entry.data == by_id[entry.event_id].to_json()  # the original bytes
        assert entry.reason == "handler_error" and f"chosen failure for {entry.event_id}" in entry.error
        assert entry.deliveries == 3 and entry.agent == "feature-engineer" and entry.track == "shared"
        assert attempts[entry.event_id] == 3
        assert entry.original_headers()["Apex-Correlation-Id"] == by_id[entry.event_id].correlation_id

    # The bug is fixed: replay puts them back, they succeed, the DLQ is empty.
    broken = False
    ids = [await dlq.replay(js, e) for e in entries]
    assert all(i.endswith(".replay.1") for i in ids)
    async with RunningConsumer(js, decl, cfg, batch=256):
        await wait_settled(js, decl)
    assert set(acked) == {e.id for e in events} and len(acked) == N
    assert [e async for e in dlq.iter_entries(js, dlq_stream)] == []
