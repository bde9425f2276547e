"""`apex demo`: the bus on this machine in ~15 s, until `apex up` runs the whole pipeline.

An embedded nats-server, the pipeline's real topology, a synthetic scanner publishing snapshots, two
hops through the real middleware chain (snapshot → features.computed → signal.proposed), one
malformed event that lands in the DLQ, and a live table of counts from the Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from apextrader.bus import dlq, metrics
from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.consumer import PullConsumer
from apextrader.bus.middleware import ChainConfig, CompletedIds, Handler, build_chain
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import Topology, declare, stream_name, subject
from apextrader.contracts import (
    Bar,
    Envelope,
    Features,
    FeaturesComputed,
    FeaturesComputedEvent,
    MarketSnapshot,
    MarketSnapshotEvent,
    SignalProposed,
    SignalProposedEvent,
    TradingPipeline,
)
from apextrader.contracts.names import AgentId, EventType, Track
from apextrader.local.nats_server import EmbeddedNats


@dataclass
class DemoStats:
    published: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def _bars(seed: int) -> Iterator[Bar]:
    """An endless seeded random walk of 1-minute bars."""
    rng = random.Random(seed)
    price, t0 = 60_000.0, datetime(2026, 1, 1, tzinfo=UTC)
    for i in itertools.count():
        o = price
        price *= math.exp(rng.gauss(0, 0.002))
        hi = max(o, price) * (1 + abs(rng.gauss(0, 0.0005)))
        lo = min(o, price) * (1 - abs(rng.gauss(0, 0.0005)))
        yield Bar(
            open_time=t0 + timedelta(minutes=i),
            open=o,
            high=hi,
            low=lo,
            close=price,
            volume=rng.uniform(5, 50),
        )


class DemoHops:
    """Two toy hops with real contracts: an EMA feature, and a crossover signal."""

    def __init__(self, stats: DemoStats, poisoned_seq: int) -> None:
        self.poisoned_seq = poisoned_seq
        self.ema: float | None = None
        self.last_side: str | None = None
        self.stats = stats

    async def features(self, ev: Envelope) -> Sequence[Envelope]:
        assert isinstance(ev, MarketSnapshotEvent)
        if ev.data.seq == self.poisoned_seq:
            # A bug that hits one bar: retried with back-off, then dead-lettered after max_deliver.
            raise ZeroDivisionError(f"demo bug on bar {ev.data.seq}")
        close = ev.data.bar.close
        self.ema = close if self.ema is None else self.ema + (close - self.ema) * (2 / 21)
        data = FeaturesComputed(
            exchange=ev.data.exchange, symbol=ev.data.symbol, timeframe=ev.data.timeframe, bar=ev.data.bar,
            features=Features(ema20=self.ema),
        )  # fmt: skip
        return [ev.derive(FeaturesComputedEvent, data, source_agent="feature-engineer")]

    async def strategy(self, ev: Envelope) -> Sequence[Envelope]:
        assert isinstance(ev, FeaturesComputedEvent)
        lag = (datetime.now(UTC) - ev.origin_ts).total_seconds() * 1000
        self.stats.latencies_ms.append(lag)
        ema = ev.data.features.ema20
        side = "long" if ema is not None and ev.data.bar.close > ema else "short"
        if side == self.last_side:
            return []
        self.last_side = side
        sig = SignalProposed(
            strategy="breakout", exchange=ev.data.exchange, symbol=ev.data.symbol, side=side, strength=0.5,
            bar_time=ev.data.bar.open_time, price=ev.data.bar.close,
        )  # fmt: skip
        return [ev.derive(SignalProposedEvent, sig, source_agent="strategy-builder", track="stable")]


def _count(agent: AgentId, track: Track, etype: str, outcome: str) -> int:
    return int(metrics.EVENTS.labels(agent, track, etype, outcome)._value.get())


def _view(
    topology: Topology, stats: DemoStats, elapsed: float, duration: float, dlq_rows: list[dlq.DlqEntry]
) -> Group:
    table = Table(
        title=f"apex demo — pipeline {topology.pipeline} — {elapsed:4.1f}/{duration:.0f} s",
        title_justify="left",
    )
    for col in ("hop", "consumes", "acked", "retried", "invalid", "dlq"):
        text = col in ("hop", "consumes")
        table.add_column(col, justify="left" if text else "right", no_wrap=text)
    for agent, track, etype in (
        ("feature-engineer", "shared", "market.snapshot"),
        ("strategy-builder", "stable", "features.computed"),
    ):
        table.add_row(
            f"{agent}-{track}", etype,
            *(str(_count(agent, track, etype, o)) for o in ("acked", "retried")),  # type: ignore[arg-type]
            str(_count(agent, track, "unknown", "invalid") + _count(agent, track, etype, "invalid")),  # type: ignore[arg-type]
            str(_count(agent, track, etype, "dlq")),  # type: ignore[arg-type]
        )  # fmt: skip
    lat = sorted(stats.latencies_ms[-2000:])
    p50 = lat[len(lat) // 2] if lat else 0.0
    p99 = lat[int(len(lat) * 0.99)] if lat else 0.0
    summary = (
        f"published snapshots: [bold]{stats.published}[/]   two-hop latency (origin → strategy) "
        f"p50 [bold]{p50:.2f} ms[/]  p99 [bold]{p99:.2f} ms[/]"
    )
    dlq_table = Table(title="dead-letter queue (apex dlq ls)", title_justify="left")
    for col in ("id", "agent", "reason", "tries", "error"):
        dlq_table.add_column(col)
    for e in dlq_rows[-5:]:
        dlq_table.add_row(str(e.seq), e.agent, e.reason, str(e.deliveries), e.error[:70])
    return Group(table, Panel(summary), dlq_table)


async def run_demo(
    pipeline: TradingPipeline, *, duration: float = 15.0, rate: float = 50.0, console: Console | None = None
) -> int:
    """Run the demo; returns the number of DLQ entries at the end (1: the malformed event)."""
    console = console or Console()
    stats = DemoStats()
    with tempfile.TemporaryDirectory(prefix="apex-demo-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats").start()
        try:
            nc = await connect(server.url, name="apex-demo")
            js = nc.jetstream()
            topology = declare(pipeline.spec, pipeline.name)
            await ensure_topology(js, topology)
            publisher = Publisher(js)
            hops = DemoHops(stats, poisoned_seq=int(rate))
            consumers = []
            plan: list[tuple[AgentId, Track, EventType, Handler]] = [
                ("feature-engineer", "shared", "market.snapshot", hops.features),
                ("strategy-builder", "stable", "features.computed", hops.strategy),
            ]
            for agent, track, etype, handler in plan:
                decl = topology.consumers_for(agent, track)[0]
                cfg = ChainConfig(
                    js=js, pipeline=pipeline.name, agent=agent, track=track, stream=decl.stream,
                    max_deliver=decl.max_deliver, backoff_s=decl.backoff_s, handlers={etype: handler},
                    publisher=publisher, completed=CompletedIds(),
                )  # fmt: skip
                consumer = PullConsumer(js, decl, build_chain(cfg), fetch_timeout=0.2)
                await consumer.bind()
                consumers.append((consumer, asyncio.create_task(consumer.run())))
            bars = _bars(pipeline.spec.source.seed if hasattr(pipeline.spec.source, "seed") else 1)
            symbol = pipeline.spec.symbols[0]
            started = time.monotonic()
            dlq_rows: list[dlq.DlqEntry] = []
            malformed_sent = False
            with Live(console=console, refresh_per_second=8, transient=False) as live:
                i = 0
                while (elapsed := time.monotonic() - started) < duration:
                    data = MarketSnapshot(
                        exchange="binance",
                        symbol=symbol,
                        timeframe=pipeline.spec.timeframe,
                        bar=next(bars),
                        seq=i,
                    )
                    await publisher.publish(
                        MarketSnapshotEvent.new(data, pipeline=pipeline.name, source_agent="market-scanner")
                    )
                    stats.published += 1
                    i += 1
                    if not malformed_sent and elapsed > duration / 3:
                        # A scanner bug: a snapshot without a bar. It must land in the DLQ, not vanish.
                        bad = b'{"type": "market.snapshot", "id": "not-an-id", "data": {"symbol": "BTC"}}'
                        await js.publish(
                            subject(pipeline.name, "market.snapshot", "shared"),
                            bad,
                            headers={"Nats-Msg-Id": "demo-malformed"},
                        )
                        malformed_sent = True
                    if i % max(1, int(rate / 4)) == 0:
                        dlq_rows = [e async for e in dlq.iter_entries(js, stream_name(pipeline.name, "DLQ"))]
                        live.update(_view(topology, stats, elapsed, duration, dlq_rows))
                    await asyncio.sleep(1 / rate)
                await asyncio.sleep(0.5)
                dlq_rows = [e async for e in dlq.iter_entries(js, stream_name(pipeline.name, "DLQ"))]
                live.update(_view(topology, stats, duration, duration, dlq_rows))
            for consumer, task in consumers:
                consumer.stop()
                await task
            await nc.drain()
        finally:
            server.stop()
    console.print(
        f"\n[green]done:[/] {stats.published} snapshots through two hops; {len(dlq_rows)} event(s) "
        "dead-lettered with their reason (on a live pipeline: [bold]apex dlq ls[/])."
    )
    return len(dlq_rows)
