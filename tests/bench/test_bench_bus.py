"""Bus benchmarks (printed, never asserted on timing). Smoke-sized in the normal suite; full size with
APEX_BENCH_FULL=1 (`make bench`).

- One bus hop, consumer side: events/s through PullConsumer + the whole middleware chain (decode,
  validate, trace, idempotency, metrics, ack) next to a raw nats-py pull loop (fetch + ack) on the
  same server in the same run. Goal: >= 0.5x raw.
- One bus hop latency at 1,000 ev/s paced: publish (PubAck awaited) → chain → handler → ack, p50/p99,
  next to raw nats-py. Goal: p99 < 5 ms.
- Envelope encode+decode per event: pydantic-core JSON vs orjson + model_validate.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import orjson
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from apextrader.bus.client import ensure_topology
from apextrader.bus.consumer import PullConsumer
from apextrader.bus.middleware import build_chain
from apextrader.bus.topology import Topology, subject
from apextrader.contracts import (
    EVENT_CLASSES,
    BookLevel,
    Envelope,
    MarketSnapshot,
    MarketSnapshotEvent,
    OrderBook,
    decode_event,
)
from tests.bus.helpers import chain_config, consumer_decl, fast_topology, publish_many, snapshot

pytestmark = pytest.mark.bench
FULL = os.environ.get("APEX_BENCH_FULL") == "1"
N_THROUGHPUT = 20_000 if FULL else 2_000
LATENCY_SECONDS = 10.0 if FULL else 1.0
RATE = 1_000.0
N_CODEC = 20_000 if FULL else 2_000
RAW_STREAM = "BENCH_RAW"
RAW_SUBJECT = "bench.raw"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drain_with(run: Callable[[], Awaitable[None]], done: asyncio.Event, n: int) -> float:
    task = asyncio.create_task(run())
    started = time.perf_counter()
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return n / elapsed


async def raw_stream(js: JetStreamContext) -> None:
    await js.add_stream(name=RAW_STREAM, subjects=[RAW_SUBJECT + ".>"])
    await js.add_consumer(RAW_STREAM, durable_name="raw", ack_policy="explicit", max_ack_pending=1000)


async def raw_consume(js: JetStreamContext, on_acked: Callable[[Msg], None], stop: asyncio.Event) -> None:
    sub = await js.pull_subscribe_bind(durable="raw", stream=RAW_STREAM)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(64, timeout=0.2)
        except TimeoutError:
            continue
        for msg in msgs:
            await msg.ack()
            on_acked(msg)


async def test_bench_bus_hop_throughput_and_latency(nc: NatsClient, topology: Topology) -> None:
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    await raw_stream(js)
    decl = consumer_decl(topo, "feature-engineer")
    events = [snapshot(i) for i in range(N_THROUGHPUT)]

    # -- throughput: pre-filled streams, consume everything ------------------------------------
    await publish_many(js, events)
    raw_sem = asyncio.Semaphore(256)

    async def raw_pub(ev: Envelope, subj: str = RAW_SUBJECT + ".x") -> None:
        async with raw_sem:
            await js.publish(subj, ev.to_json(), headers={"Nats-Msg-Id": ev.id})

    await asyncio.gather(*(raw_pub(ev) for ev in events))

    handled = 0
    ours_done = asyncio.Event()
    t_ack: dict[str, float] = {}

    async def handle(ev: Envelope) -> None:
        return None

    chain = build_chain(chain_config(js, topo, decl, {"market.snapshot": handle}))

    async def timed_chain(msg: Msg):  # type: ignore[no-untyped-def]
        nonlocal handled
        d = await chain(msg)
        handled += 1
        if d.event is not None:
            t_ack[d.event.id] = time.perf_counter()
        if handled == target:
            ours_done.set()
        return d

    consumer = PullConsumer(js, decl, timed_chain, batch=64, fetch_timeout=0.2)
    await consumer.bind()
    target = N_THROUGHPUT
    ours_eps = await _drain_with(consumer.run, ours_done, N_THROUGHPUT)

    raw_count = 0
    raw_done = asyncio.Event()
    raw_stop = asyncio.Event()
    raw_t: dict[str, float] = {}
    raw_target = N_THROUGHPUT

    def raw_acked(msg: Msg) -> None:
        nonlocal raw_count
        raw_count += 1
        raw_t[(msg.headers or {}).get("Nats-Msg-Id", "")] = time.perf_counter()
        if raw_count == raw_target:
            raw_done.set()

    raw_eps = await _drain_with(lambda: raw_consume(js, raw_acked, raw_stop), raw_done, N_THROUGHPUT)
    assert handled == N_THROUGHPUT and raw_count == N_THROUGHPUT

    # -- latency at 1,000 ev/s paced: publish → ... → ack --------------------------------------
    n_lat = int(LATENCY_SECONDS * RATE)

    async def paced(publish: Callable[[Envelope], Awaitable[object]], t0: dict[str, float]) -> None:
        lat_events = [snapshot(100_000 + i) for i in range(n_lat)]
        start = time.perf_counter()
        for i, ev in enumerate(lat_events):
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t0[ev.id] = time.perf_counter()
            await publish(ev)

    async def ours_publish(ev: Envelope) -> object:
        return await js.publish(
            subject("btc-perp", "market.snapshot", "shared"), ev.to_json(), headers={"Nats-Msg-Id": ev.id}
        )

    async def raw_publish(ev: Envelope) -> object:
        return await js.publish(RAW_SUBJECT + ".x", ev.to_json(), headers={"Nats-Msg-Id": ev.id})

    ours_t0: dict[str, float] = {}
    t_ack.clear()
    handled, target = 0, n_lat
    ours_done.clear()
    consumer2 = PullConsumer(js, decl, timed_chain, batch=64, fetch_timeout=0.2)
    await consumer2.bind()
    runner = asyncio.create_task(consumer2.run())
    await paced(ours_publish, ours_t0)
    await asyncio.wait_for(ours_done.wait(), 60)
    consumer2.stop()
    await runner
    ours_lat = [(t_ack[k] - ours_t0[k]) * 1000 for k in ours_t0]

    raw_t0: dict[str, float] = {}
    raw_t.clear()
    raw_count, raw_target = 0, n_lat
    raw_done.clear()
    raw_stop2 = asyncio.Event()
    raw_task = asyncio.create_task(raw_consume(js, raw_acked, raw_stop2))
    await paced(raw_publish, raw_t0)
    await asyncio.wait_for(raw_done.wait(), 60)
    raw_stop2.set()
    await raw_task
    raw_lat = [(raw_t[k] - raw_t0[k]) * 1000 for k in raw_t0]

    print(
        f"\n[bench bus hop] throughput, {N_THROUGHPUT} events: apextrader chain {ours_eps:,.0f} ev/s, "
        f"raw nats-py {raw_eps:,.0f} ev/s, ratio {ours_eps / raw_eps:.2f} (goal >= 0.5)"
    )
    print(
        f"[bench bus hop] latency at {RATE:.0f} ev/s paced, {n_lat} events: apextrader p50 "
        f"{statistics.median(ours_lat):.2f} ms p99 {pct(ours_lat, 0.99):.2f} ms; raw nats-py p50 "
        f"{statistics.median(raw_lat):.2f} ms p99 {pct(raw_lat, 0.99):.2f} ms (goal p99 < 5 ms)"
    )


def rich_snapshot() -> MarketSnapshotEvent:
    base = snapshot(1)
    depth = OrderBook(
        bids=[BookLevel(price=100.0 - i * 0.1, amount=1.0 + i) for i in range(10)],
        asks=[BookLevel(price=100.1 + i * 0.1, amount=1.0 + i) for i in range(10)],
    )
    data = MarketSnapshot.model_validate({**base.data.model_dump(), "depth": depth, "funding_rate": 0.0001})
    return MarketSnapshotEvent.new(data, pipeline="btc-perp", source_agent="market-scanner")


def per_event_us(fn: Callable[[], object], n: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


@pytest.mark.parametrize("kind", ["bare", "with depth"])
def test_bench_envelope_codec(kind: str) -> None:
    ev = snapshot(1) if kind == "bare" else rich_snapshot()
    raw = ev.to_json()
    cls = EVENT_CLASSES[ev.type]

    def pydantic_core() -> object:
        return decode_event(ev.model_dump_json())

    def pydantic_core_hinted() -> object:  # what the chain does: class chosen by the Apex-Type header
        return cls.model_validate_json(ev.model_dump_json())

    def orjson_validate() -> object:
        return cls.model_validate(orjson.loads(orjson.dumps(ev.model_dump(mode="json"))))

    assert decode_event(raw) == ev == orjson_validate()
    a = per_event_us(pydantic_core, N_CODEC)
    h = per_event_us(pydantic_core_hinted, N_CODEC)
    b = per_event_us(orjson_validate, N_CODEC)
    enc = per_event_us(lambda: ev.model_dump_json(), N_CODEC)
    dec = per_event_us(lambda: decode_event(raw), N_CODEC)
    print(
        f"\n[bench envelope {kind}, {len(raw)} B] encode+decode per event: pydantic-core JSON {a:.1f} µs "
        f"(encode {enc:.1f} + union decode {dec:.1f}), pydantic-core with type hint {h:.1f} µs, "
        f"orjson+model_validate {b:.1f} µs; faster: {'pydantic-core' if min(a, h) <= b else 'orjson'} "
        "(goal < 10 µs)"
    )
