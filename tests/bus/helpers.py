"""Helpers for bus tests: fast retry settings, sample events, pipelined publishing, a consumer task."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from apextrader.bus.consumer import PullConsumer
from apextrader.bus.middleware import ChainConfig, CompletedIds, build_chain
from apextrader.bus.publisher import Publisher, event_headers
from apextrader.bus.topology import ConsumerDecl, Topology, subject
from apextrader.contracts import Bar, Envelope, Handler, MarketSnapshot, MarketSnapshotEvent
from apextrader.contracts.names import AgentId, EventType, Track

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fast_topology(topology: Topology, *, max_deliver: int = 3, backoff_s: float = 0.05) -> Topology:
    """The same topology with quick retries (tests must not wait for production back-off)."""
    consumers = [
        dataclasses.replace(
            c, max_deliver=max_deliver, backoff_s=[backoff_s] * (max_deliver - 1), ack_wait_s=5.0
        )
        for c in topology.consumers
    ]
    return dataclasses.replace(topology, consumers=consumers)


def snapshot(i: int, *, pipeline: str = "btc-perp", symbol: str = "BTC/USDT:USDT") -> MarketSnapshotEvent:
    price = 100.0 + (i % 50)
    bar = Bar(
        open_time=T0 + timedelta(minutes=i),
        open=price,
        high=price + 1.0,
        low=price - 1.0,
        close=price + 0.5,
        volume=10.0 + i % 7,
    )
    data = MarketSnapshot(exchange="binance", symbol=symbol, timeframe="1m", bar=bar, seq=i)
    return MarketSnapshotEvent.new(data, pipeline=pipeline, source_agent="market-scanner")


async def publish_many(js: JetStreamContext, events: Iterable[Envelope], window: int = 256) -> int:
    """Publish with up to `window` PubAcks outstanding; returns how many were stored (not duplicates)."""
    sem = asyncio.Semaphore(window)
    stored = 0

    async def one(ev: Envelope) -> None:
        nonlocal stored
        async with sem:
            ack = await js.publish(
                subject(ev.pipeline, ev.type, ev.track), ev.to_json(), headers=event_headers(ev)
            )
            stored += 0 if ack.duplicate else 1

    await asyncio.gather(*(one(ev) for ev in events))
    return stored


def consumer_decl(
    topology: Topology, agent: AgentId, track: Track = "shared", index: int = 0
) -> ConsumerDecl:
    return topology.consumers_for(agent, track)[index]


def chain_config(
    js: JetStreamContext,
    topology: Topology,
    decl: ConsumerDecl,
    handlers: Mapping[EventType, Handler],
    **kw: object,
) -> ChainConfig:
    return ChainConfig(
        js=js,
        pipeline=topology.pipeline,
        agent=decl.agent,
        track=decl.track,
        stream=decl.stream,
        max_deliver=decl.max_deliver,
        backoff_s=decl.backoff_s,
        handlers=handlers,
        ack_wait_s=decl.ack_wait_s,
        publisher=kw.pop("publisher", None) or Publisher(js),  # type: ignore[arg-type]
        completed=kw.pop("completed", None) or CompletedIds(),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


class RunningConsumer:
    """A PullConsumer running in a task for the duration of a test."""

    def __init__(self, js: JetStreamContext, decl: ConsumerDecl, cfg: ChainConfig, batch: int = 64) -> None:
        self.consumer = PullConsumer(js, decl, build_chain(cfg), batch=batch, fetch_timeout=0.2)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RunningConsumer:
        await self.consumer.bind()
        self.task = asyncio.create_task(self.consumer.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.consumer.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)


async def wait_until(predicate: Callable[[], bool], limit_s: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def consumer_settled(js: JetStreamContext, decl: ConsumerDecl) -> bool:
    """Nothing pending, nothing waiting for an ack."""
    info = await js.consumer_info(decl.stream, decl.durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def wait_settled(js: JetStreamContext, decl: ConsumerDecl, limit_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await consumer_settled(js, decl):
        if asyncio.get_running_loop().time() > deadline:
            info = await js.consumer_info(decl.stream, decl.durable)
            raise AssertionError(
                f"consumer not settled: pending={info.num_pending} ack_pending={info.num_ack_pending}"
            )
        await asyncio.sleep(0.05)
