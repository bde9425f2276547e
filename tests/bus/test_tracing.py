"""Must hold: correlation id and trace id survive a three-hop chain, and the spans reach an OTLP
receiver as one trace per correlation id (the trace id *is* the correlation id)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from contextlib import AsyncExitStack

from nats.aio.client import Client as NatsClient

from apextrader.bus.client import ensure_topology
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import Topology, stream_name
from apextrader.bus.tracing import setup_tracing, trace_id_of, tracer_from
from apextrader.contracts import (
    Envelope,
    Features,
    FeaturesComputed,
    FeaturesComputedEvent,
    MarketSnapshotEvent,
    SignalProposed,
    SignalProposedEvent,
    SignalValidated,
    SignalValidatedEvent,
)
from tests.bus.helpers import (
    RunningConsumer,
    chain_config,
    consumer_decl,
    fast_topology,
    snapshot,
    wait_settled,
)
from tests.bus.otlp_receiver import OtlpReceiver

ROOTS = 5


async def test_three_hops_keep_correlation_and_trace(nc: NatsClient, topology: Topology) -> None:
    receiver = await OtlpReceiver().start()
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    providers = {
        name: setup_tracing(name, receiver.endpoint)
        for name in ("scanner", "features", "strategy", "backtester")
    }
    assert all(p is not None for p in providers.values())
    tracers = {k: tracer_from(p) for k, p in providers.items()}

    async def features(ev: Envelope) -> list[Envelope]:
        assert isinstance(ev, MarketSnapshotEvent)
        data = FeaturesComputed(
            exchange="binance", symbol=ev.data.symbol, timeframe="1m", bar=ev.data.bar, features=Features()
        )
        return [ev.derive(FeaturesComputedEvent, data, source_agent="feature-engineer")]

    async def strategy(ev: Envelope) -> list[Envelope]:
        assert isinstance(ev, FeaturesComputedEvent)
        sig = SignalProposed(
            strategy="breakout", exchange="binance", symbol=ev.data.symbol, side="long", strength=0.5,
            bar_time=ev.data.bar.open_time, price=ev.data.bar.close,
        )  # fmt: skip
        return [ev.derive(SignalProposedEvent, sig, source_agent="strategy-builder", track="stable")]

    async def backtester(ev: Envelope) -> list[Envelope]:
        assert isinstance(ev, SignalProposedEvent)
        val = SignalValidated(signal=ev.data, expectancy=0.1, expectancy_se=0.01, trades=30, confidence=0.9)
        return [ev.derive(SignalValidatedEvent, val, source_agent="backtester")]

    hops = [
        (consumer_decl(topo, "feature-engineer"), features, "features", "market.snapshot"),
        (consumer_decl(topo, "strategy-builder", "stable"), strategy, "strategy", "features.computed"),
        (consumer_decl(topo, "backtester", index=1), backtester, "backtester", "signal.proposed"),
    ]
    roots = [snapshot(i) for i in range(ROOTS)]
    async with AsyncExitStack() as stack:
        for decl, handler, name, etype in hops:
            cfg = chain_config(
                js, topo, decl, {etype: handler}, tracer=tracers[name], publisher=Publisher(js, tracers[name])
            )  # type: ignore[dict-item]
            await stack.enter_async_context(RunningConsumer(js, decl, cfg))
        scanner = Publisher(js, tracers["scanner"])
        for ev in roots:
            await scanner.publish(ev)
        signals = stream_name("btc-perp", "SIGNALS")
        for _ in range(200):
            if (await js.stream_info(signals)).state.messages == 2 * ROOTS:
                break
            await asyncio.sleep(0.05)
        for decl, *_ in hops:
            await wait_settled(js, decl)

    # The last hop's events keep the root's correlation id, and their traceparent carries it as trace id.
    sub = await js.pull_subscribe("apex.btc-perp.signal.validated.>", stream=signals)
    finals = await sub.fetch(ROOTS, timeout=5)
    assert len(finals) == ROOTS
    corr = {r.correlation_id for r in roots}
    for msg in finals:
        ev = SignalValidatedEvent.model_validate_json(msg.data)
        assert ev.correlation_id in corr
        assert trace_id_of(msg.headers or {}) == ev.correlation_id

    for p in providers.values():
        assert p is not None
        await asyncio.to_thread(p.shutdown)  # flushes; in a thread, the receiver runs on this loop
    await receiver.stop()
    traces: dict[str, list[str]] = defaultdict(list)
    for span in receiver.spans:
        traces[span.trace_id].append(f"{span.service}:{span.name}")
    assert set(traces) == corr  # one trace per correlation id, nothing else
    for spans in traces.values():
        assert sorted(spans) == sorted(
            ["scanner:publish market.snapshot", "features:handle market.snapshot",
             "strategy:handle features.computed", "backtester:handle signal.proposed"]
        )  # fmt: skip
    # Parent links: each hop's span is the child of the previous hop's span.
    by_id = {s.span_id: s for s in receiver.spans}
    for s in receiver.spans:
        if s.name == "handle signal.proposed":
            parent = by_id[s.parent_span_id]
            assert (
                parent.name == "handle features.computed"
                and by_id[parent.parent_span_id].name == "handle market.snapshot"
            )
