"""StrategyBuilder on a real nats-server: signals equal the vectorised strategy for the live bars (none
for backfill), and its windows are rebuilt after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from nats.aio.client import Client as NatsClient

from apextrader.bus import dlq
from apextrader.bus.publisher import event_headers
from apextrader.bus.topology import stream_name, subject
from apextrader.contracts import (
    TradingPipeline,
)
from apextrader.local.nats_server import EmbeddedNats
from apextrader.quant.indicators import compute_features
from apextrader.quant.strategies import STRATEGIES, FeatureArrays, params_for, signals
from apextrader.runtime import AgentRunner
from apextrader.strategy.agent import StrategyBuilderAgent
from tests.bus.helpers import publish_many
from tests.fixtures.quant_agents import PIPE, collect, feature_events, settings, start
from tests.quant.bars import random_bars


async def test_strategy_builder_proposes_exactly_the_vectorised_signals(
    nats_server: EmbeddedNats,
    pipeline_file: Path,
    nc: NatsClient,
    example_pipeline: TradingPipeline,
    agent_tasks: list,
) -> None:  # type: ignore[type-arg]
    frame = compute_features(random_bars(900, seed=31))
    events = feature_events(frame, backfill=400)
    runner = await start(agent_tasks, AgentRunner(
        StrategyBuilderAgent, settings(nats_server, pipeline_file, "strategy-builder", "stable"),
        configure_logging=False))  # fmt: skip
    await publish_many(nc.jetstream(), events)

    spec = example_pipeline.spec
    features = FeatureArrays.from_frame(frame)
    expected = []
    for name in STRATEGIES:
        sig = signals(STRATEGIES[name], features, params_for(spec, name))  # type: ignore[arg-type]
        expected += [
            (name, int(t), "long" if sig.side[t] > 0 else "short")
            for t in np.flatnonzero(sig.side)
            if t >= 400
        ]
    assert expected, "the data must produce live signals for this test to mean anything"
    got = await collect(nc, subject(PIPE, "signal.proposed", "stable"), len(expected))
    await asyncio.sleep(0.5)
    by_time = {e.data.bar.open_time: i for i, e in enumerate(events)}  # type: ignore[attr-defined]
    seen = sorted((e.data.strategy, by_time[e.data.bar_time], e.data.side) for e in got)  # type: ignore[attr-defined]
    assert seen == sorted(expected)
    assert all(e.track == "stable" and e.source_agent == "strategy-builder" for e in got)
    causes = {ev.id: ev for ev in events}
    for e in got:
        assert e.correlation_id == causes[e.causation_id].correlation_id  # type: ignore[index]
    assert runner.agent is not None

    # NaN from a non-pydantic producer (pydantic itself writes NaN as null): dead-lettered at once
    broken = feature_events(frame.slice(899, 1), backfill=0)[0]
    raw = broken.to_json().replace(b'"atr14":' + str(frame["atr14"][899]).encode(), b'"atr14":NaN')
    assert b"NaN" in raw
    await nc.jetstream().publish(
        subject(PIPE, "features.computed", "shared"), raw, headers=event_headers(broken)
    )
    entries: list = []  # type: ignore[type-arg]
    for _ in range(100):
        entries = [e async for e in dlq.iter_entries(nc.jetstream(), stream_name(PIPE, "DLQ"))]
        if entries:
            break
        await asyncio.sleep(0.05)
    assert len(entries) == 1 and entries[0].reason == "invalid" and "NaN feature(s) atr14" in entries[0].error
    assert entries[0].agent == "strategy-builder" and entries[0].deliveries == 1


async def test_strategy_builder_rebuilds_its_windows_after_a_restart(
    nats_server: EmbeddedNats, pipeline_file: Path, nc: NatsClient, example_pipeline: TradingPipeline
) -> None:
    """Stopped halfway and restarted, it rebuilds the windows from the stream's history, so the signals
    are exactly those of an uninterrupted run (none lost, none doubled)."""
    frame = compute_features(random_bars(900, seed=31))
    events = feature_events(frame, backfill=400)
    js = nc.jetstream()
    cfg = settings(nats_server, pipeline_file, "strategy-builder", "stable")
    for part in (events[:650], events[650:]):
        runner = AgentRunner(StrategyBuilderAgent, cfg, configure_logging=False)
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.started.wait(), 20)
        await publish_many(js, part)
        for _ in range(200):  # until the consumer has handled the part
            info = await js.consumer_info(stream_name(PIPE, "FEATURES"), "strategy-builder-stable")
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
        runner.request_stop()
        assert await asyncio.wait_for(task, 20) == 0

    features = FeatureArrays.from_frame(frame)
    expected = []
    for name in STRATEGIES:
        sig = signals(STRATEGIES[name], features, params_for(example_pipeline.spec, name))  # type: ignore[arg-type]
        expected += [(name, int(t)) for t in np.flatnonzero(sig.side) if t >= 400]
    assert any(t >= 650 for _, t in expected), (
        "the second half must have signals for this test to mean anything"
    )
    got = await collect(nc, subject(PIPE, "signal.proposed", "stable"), len(expected) + 1, wait_s=3)
    by_time = {e.data.bar.open_time: i for i, e in enumerate(events)}
    assert sorted((e.data.strategy, by_time[e.data.bar_time]) for e in got) == sorted(expected)  # type: ignore[attr-defined]
