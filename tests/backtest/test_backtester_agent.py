"""Backtester on a real nats-server: the walk-forward gate validates or rejects as computed offline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from apextrader.backtest.agent import BacktesterAgent
from apextrader.bus.metrics import EXPECTANCY
from apextrader.bus.topology import subject
from apextrader.contracts import (
    SignalProposed,
    SignalProposedEvent,
    TradingPipeline,
)
from apextrader.contracts.names import Track
from apextrader.local.nats_server import EmbeddedNats
from apextrader.quant.indicators import compute_features
from apextrader.quant.live import BarBuffer, bar_time_ms, feature_values, walk_forward_record
from apextrader.runtime import AgentRunner
from tests.bus.helpers import publish_many
from tests.fixtures.quant_agents import PIPE, SYMBOL, collect, feature_events, settings, start
from tests.quant.bars import random_bars


@pytest.mark.parametrize("min_expectancy", [0.0, -1.0])  # -1: every record with enough trades passes
async def test_backtester_gate_matches_the_offline_walk_forward(
    nats_server: EmbeddedNats,
    pipeline_file: Path,
    nc: NatsClient,
    example_pipeline: TradingPipeline,
    agent_tasks: list,  # type: ignore[type-arg]
    min_expectancy: float,
) -> None:
    doc = example_pipeline.model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["backtest"]["minExpectancy"] = min_expectancy
    pipeline = TradingPipeline.model_validate(doc)
    spec = pipeline.spec
    frame = compute_features(random_bars(1000, seed=32))
    events = feature_events(frame, backfill=700)
    runner = await start(
        agent_tasks,
        AgentRunner(
            BacktesterAgent,
            settings(nats_server, pipeline_file, "backtester", "shared"),
            pipeline=pipeline,
            configure_logging=False,
        ),
    )
    agent = runner.agent
    assert isinstance(agent, BacktesterAgent)

    def proposal(track: Track, strategy: str, n: int) -> SignalProposedEvent:
        row = frame.row(n, named=True)
        data = SignalProposed(strategy=strategy, exchange="binance", symbol=SYMBOL, side="long",  # type: ignore[arg-type]
                              strength=0.7, bar_time=row["timestamp"], price=row["close"])  # fmt: skip
        return SignalProposedEvent.new(data, pipeline=PIPE, source_agent="strategy-builder", track=track)

    js = nc.jetstream()
    early = proposal("stable", "breakout", 10)
    await publish_many(js, [early])
    first = await collect(nc, subject(PIPE, "signal.rejected", "stable"), 1)
    assert first[0].data.rule == "no_record" and "bars" in first[0].data.reason  # type: ignore[attr-defined]

    await publish_many(js, events)
    last_ms = bar_time_ms(events[-1].data)
    for _ in range(400):
        if len(agent.records) == 4 and all(r.as_of_ms == last_ms for r in agent.records.values()):
            break
        await asyncio.sleep(0.05)
    # the same walk-forward offline, per track with the track's own spec
    from apextrader.contracts import track_spec

    buffer = BarBuffer(agent.buffer_size)
    for ev in events:
        buffer.add(bar_time_ms(ev.data), feature_values(ev.data))
    outcomes = {}
    for track in ("stable", "canary"):
        for name in ("breakout", "mean_reversion"):
            offline = walk_forward_record(buffer, track_spec(spec, track), name)  # type: ignore[arg-type]
            assert offline is not None
            record = agent.records[(("binance", SYMBOL), name, track)]  # type: ignore[index]
            assert record.verdict == offline.verdict
            outcomes[(track, name)] = offline.verdict
    stable_bo = outcomes[("stable", "breakout")]
    if stable_bo.expectancy is not None:
        gauge = EXPECTANCY.labels(track="stable", strategy="breakout")._value.get()
        assert gauge == pytest.approx(stable_bo.expectancy)
    from apextrader.bus.metrics import GATE_ACCEPTED, GATE_THRESHOLD

    labels = {"track": "stable", "strategy": "breakout", "exchange": "binance", "symbol": SYMBOL}
    assert GATE_ACCEPTED.labels(**labels)._value.get() == float(stable_bo.accepted)
    if stable_bo.threshold is not None:
        assert GATE_THRESHOLD.labels(**labels)._value.get() == pytest.approx(stable_bo.threshold)

    await publish_many(js, [proposal(t, n, 999) for (t, n) in outcomes])
    validated = await collect(
        nc, subject(PIPE, "signal.validated", "*"), sum(v.accepted for v in outcomes.values()), 5
    )
    rejected = await collect(
        nc, subject(PIPE, "signal.rejected", "*"), 1 + sum(not v.accepted for v in outcomes.values()), 5
    )
    assert len(validated) + len(rejected) == 5
    if min_expectancy < 0:
        assert validated, "the permissive gate must validate something"
    for ev in validated:
        v = outcomes[(ev.track, ev.data.signal.strategy)]  # type: ignore[attr-defined, index]
        assert v.accepted and ev.data.expectancy == v.expectancy and ev.data.trades == v.trades  # type: ignore[attr-defined]
        test = (ev.data.statistic, ev.data.threshold, ev.data.trials, ev.data.method)  # type: ignore[attr-defined]
        assert test == (v.statistic, v.threshold, v.trials, "oos-t-bonferroni") and v.trials == 4
    for ev in rejected[1:] if rejected and rejected[0].id == first[0].id else rejected:
        v = outcomes[(ev.track, ev.data.strategy)]  # type: ignore[attr-defined, index]
        assert not v.accepted and ev.data.reason == v.reason and ev.data.stage == "backtester"  # type: ignore[attr-defined]
        assert (ev.data.threshold, ev.data.trials) == (v.threshold, v.trials)  # type: ignore[attr-defined]
