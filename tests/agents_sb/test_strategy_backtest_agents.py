"""StrategyBuilder and Backtester on a real nats-server: signals equal the vectorised strategy for the
live bars (none for backfill), and the walk-forward gate validates or rejects as computed offline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from nats.aio.client import Client as NatsClient

from apextrader.backtest.agent import BacktesterAgent
from apextrader.bus import dlq
from apextrader.bus.metrics import EXPECTANCY
from apextrader.bus.publisher import event_headers
from apextrader.bus.topology import stream_name, subject
from apextrader.contracts import (
    Bar,
    Envelope,
    Features,
    FeaturesComputed,
    FeaturesComputedEvent,
    SignalProposed,
    SignalProposedEvent,
    TradingPipeline,
    decode_event,
)
from apextrader.contracts.names import AgentId, Track
from apextrader.local.nats_server import EmbeddedNats
from apextrader.quant.indicators import compute_features
from apextrader.quant.live import BarBuffer, bar_time_ms, feature_values, walk_forward_record
from apextrader.quant.strategies import STRATEGIES, FeatureArrays, params_for, signals
from apextrader.runtime import AgentRunner, AgentSettings
from apextrader.strategy.agent import StrategyBuilderAgent
from tests.bus.helpers import publish_many
from tests.quant.bars import random_bars

PIPE = "btc-perp"
SYMBOL = "BTC/USDT:USDT"


def feature_events(frame: pl.DataFrame, backfill: int) -> list[FeaturesComputedEvent]:
    events = []
    for i, row in enumerate(frame.iter_rows(named=True)):
        bar = Bar(open_time=row["timestamp"], open=row["open"], high=row["high"], low=row["low"],
                  close=row["close"], volume=row["volume"])  # fmt: skip
        feats = Features(**{k: row[k] for k in ("atr14", "rsi14", "macd", "macd_signal", "macd_hist",
                                                 "ema20", "ema50", "ema200", "cvd")})  # fmt: skip
        data = FeaturesComputed(exchange="binance", symbol=SYMBOL, timeframe="1m", bar=bar, features=feats,
                                backfill=i < backfill)  # fmt: skip
        events.append(FeaturesComputedEvent.new(data, pipeline=PIPE, source_agent="feature-engineer"))
    return events


def settings(server: EmbeddedNats, pipeline_file: Path, agent: AgentId, track: Track) -> AgentSettings:
    return AgentSettings(agent=agent, track=track, pipeline_file=pipeline_file, nats_url=server.url,
                         http_port=0, http_host="127.0.0.1")  # fmt: skip


async def collect(nc: NatsClient, subj: str, until: int, wait_s: float = 20.0) -> list[Envelope]:
    js = nc.jetstream()
    sub = await js.pull_subscribe(subj, durable=None)
    out: list[Envelope] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while len(out) < until and loop.time() < deadline:
        try:
            msgs = await sub.fetch(100, timeout=0.5)
        except TimeoutError:
            continue
        for m in msgs:
            out.append(decode_event(m.data))
            await m.ack()
    return out


@pytest.fixture
async def running() -> AsyncIterator[list[tuple[AgentRunner, asyncio.Task[int]]]]:
    started: list[tuple[AgentRunner, asyncio.Task[int]]] = []
    yield started
    for runner, task in started:
        runner.request_stop()
        assert await asyncio.wait_for(task, 20) == 0


async def start(running: list, runner: AgentRunner) -> AgentRunner:  # type: ignore[type-arg]
    task = asyncio.create_task(runner.run())
    running.append((runner, task))
    await asyncio.wait_for(runner.started.wait(), 20)
    return runner


async def test_strategy_builder_proposes_exactly_the_vectorised_signals(
    nats_server: EmbeddedNats,
    pipeline_file: Path,
    nc: NatsClient,
    example_pipeline: TradingPipeline,
    running: list,
) -> None:  # type: ignore[type-arg]
    frame = compute_features(random_bars(900, seed=31))
    events = feature_events(frame, backfill=400)
    runner = await start(running, AgentRunner(
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


@pytest.mark.parametrize("min_expectancy", [0.0, -1.0])  # -1: every record with enough trades passes
async def test_backtester_gate_matches_the_offline_walk_forward(
    nats_server: EmbeddedNats,
    pipeline_file: Path,
    nc: NatsClient,
    example_pipeline: TradingPipeline,
    running: list,  # type: ignore[type-arg]
    min_expectancy: float,
) -> None:
    doc = example_pipeline.model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["backtest"]["minExpectancy"] = min_expectancy
    pipeline = TradingPipeline.model_validate(doc)
    spec = pipeline.spec
    frame = compute_features(random_bars(1000, seed=32))
    events = feature_events(frame, backfill=700)
    runner = await start(
        running,
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
