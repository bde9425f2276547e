"""The FeatureEngineer as a real agent: features equal the batch computation, correlation kept,
only ok data used, bad input dead-lettered with the state untouched, state rebuilt after a restart."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from apextrader.bus import dlq
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import stream_name
from apextrader.contracts import (
    Envelope,
    FeaturesComputed,
    MarketSnapshot,
    MarketSnapshotEvent,
    TradingPipeline,
)
from apextrader.features.agent import FeatureEngineerAgent
from apextrader.local.nats_server import EmbeddedNats
from apextrader.market.agent import MarketScannerAgent
from apextrader.quant.indicators import FEATURE_COLUMNS, compute_features
from apextrader.runtime import AgentRunner
from tests.market.agents_on_bus import count, eventually, pipeline_with, read_all, running

SERIES = ("binance", "BTC/USDT:USDT")


@pytest.fixture
def pipeline(example_pipeline: TradingPipeline) -> TradingPipeline:
    return pipeline_with(
        example_pipeline,
        exchanges=["binance", "okx"],  # 4 series keep the test quick; the scanner test covers 6
        source={"backfillBars": 210, "speed": 3000, "snapshotHz": 10},
        agents={"feature-engineer": {"intrabar": False}},
    )


def _features_by_series(events: list[Envelope]) -> dict[tuple[str, str], list[FeaturesComputed]]:
    out: dict[tuple[str, str], list[FeaturesComputed]] = {}
    for e in events:
        assert isinstance(e.data, FeaturesComputed)
        out.setdefault((e.data.exchange, e.data.symbol), []).append(e.data)
    return out


def _assert_equals_batch(outs: list[FeaturesComputed]) -> None:
    """Streaming features equal `compute_features` over the same bars, bit for bit."""
    frame = pl.DataFrame(
        {
            "timestamp": [o.bar.open_time for o in outs],
            "open": [o.bar.open for o in outs],
            "high": [o.bar.high for o in outs],
            "low": [o.bar.low for o in outs],
            "close": [o.bar.close for o in outs],
            "volume": [o.bar.volume for o in outs],
            "buy_volume": [o.bar.buy_volume for o in outs],
        }
    )
    batch = compute_features(frame).select(FEATURE_COLUMNS).to_numpy()
    streamed = np.array([[getattr(o.features, c) for c in FEATURE_COLUMNS] for o in outs], dtype=float)
    assert np.array_equal(streamed, batch, equal_nan=True)


async def _features(runner: AgentRunner, name: str, n: int) -> bool:
    return await count(runner, name, "FEATURES") >= n


async def test_features_follow_closed_ok_bars_and_equal_the_batch(
    nats_server: EmbeddedNats, pipeline_file: Path, pipeline: TradingPipeline
) -> None:
    name = pipeline.name
    async with (
        running(MarketScannerAgent, pipeline, nats_server, pipeline_file) as scanner,
        running(FeatureEngineerAgent, pipeline, nats_server, pipeline_file) as features,
    ):
        await eventually(lambda: _features(features, name, 4 * 240))
        outs = await read_all(features, name, "features.computed")
        snaps = await read_all(scanner, name, "market.snapshot")  # after: every cause is in
    by_id = {e.id: e for e in snaps}
    for out in outs:
        cause = by_id[out.causation_id]  # type: ignore[index]
        assert out.correlation_id == cause.correlation_id and out.origin_ts == cause.origin_ts
        assert isinstance(cause.data, MarketSnapshot) and cause.data.closed
        assert out.data.backfill == cause.data.backfill  # type: ignore[attr-defined]
    series = _features_by_series(outs)
    assert len(series) == 4
    btc = series[SERIES]
    assert [o.bar.open_time for o in btc] == sorted({o.bar.open_time for o in btc})
    assert btc[198].features.ema200 is None and btc[199].features.ema200 is not None
    assert btc[209].backfill and not btc[210].backfill
    for outs_of_series in series.values():
        _assert_equals_batch(outs_of_series)


async def test_bad_or_flagged_snapshots_change_nothing(
    nats_server: EmbeddedNats, pipeline_file: Path, pipeline: TradingPipeline
) -> None:
    name = pipeline.name
    still = pipeline_with(pipeline, source={"backfillBars": 40, "speed": 0.001})  # backfill only
    async with (
        running(MarketScannerAgent, still, nats_server, pipeline_file) as scanner,
        running(FeatureEngineerAgent, still, nats_server, pipeline_file) as features,
    ):
        await eventually(lambda: _features(features, name, 4 * 40))
        snaps = [e.data for e in await read_all(scanner, name, "market.snapshot")]
        snap = [
            s
            for s in snaps
            if isinstance(s, MarketSnapshot) and s.closed and (s.exchange, s.symbol) == SERIES
        ][-1]
        agent = features.agent
        assert isinstance(agent, FeatureEngineerAgent)
        state_before = agent.series[SERIES].last_row
        nxt = snap.bar.model_copy(update={"open_time": snap.bar.open_time + timedelta(minutes=1)})
        bad_timeframe = snap.model_copy(update={"bar": nxt, "timeframe": "5m"})
        too_much_buying = snap.model_copy(
            update={"bar": nxt.model_copy(update={"buy_volume": nxt.volume * 2})}
        )
        gap_flagged = snap.model_copy(update={"bar": nxt, "quality": "gap"})
        assert scanner.nc is not None
        publisher = Publisher(scanner.nc.jetstream())
        for data in (bad_timeframe, too_much_buying, gap_flagged):
            await publisher.publish(
                MarketSnapshotEvent.new(data, pipeline=name, source_agent="market-scanner")
            )
        await eventually(lambda: _dlq(scanner, name, 2))
        await eventually(lambda: _market_settled(features, name))
        assert agent.series[SERIES].last_row == state_before  # untouched
        assert await count(features, name, "FEATURES") == 4 * 40  # nothing for the three
        entries = [e async for e in dlq.iter_entries(scanner.nc.jetstream(), stream_name(name, "DLQ"))]
    assert sorted(e.reason for e in entries) == ["invalid", "invalid"]
    errors = " | ".join(e.error for e in entries)
    assert "timeframe 5m" in errors and "buy_volume exceeds volume" in errors


async def _dlq(runner: AgentRunner, name: str, n: int) -> bool:
    return await count(runner, name, "DLQ") >= n


async def _market_settled(runner: AgentRunner, name: str) -> bool:
    assert runner.nc is not None
    info = await runner.nc.jetstream().consumer_info(stream_name(name, "MARKET"), "feature-engineer-shared")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_state_is_rebuilt_after_a_restart(
    nats_server: EmbeddedNats, pipeline_file: Path, pipeline: TradingPipeline
) -> None:
    name = pipeline.name
    async with running(MarketScannerAgent, pipeline, nats_server, pipeline_file) as scanner:
        async with running(FeatureEngineerAgent, pipeline, nats_server, pipeline_file) as first:
            await eventually(lambda: _features(first, name, 4 * 215))
        restarted_at = await count(scanner, name, "FEATURES")
        async with running(FeatureEngineerAgent, pipeline, nats_server, pipeline_file) as second:
            agent = second.agent
            assert isinstance(agent, FeatureEngineerAgent)
            assert agent.rebuilt == restarted_at  # every bar it had published, applied once
            await eventually(lambda: _features(second, name, restarted_at + 4 * 20))
            outs = await read_all(second, name, "features.computed")
    series = _features_by_series(outs)
    for outs_of_series in series.values():
        times = [o.bar.open_time for o in outs_of_series]
        assert times == sorted(set(times))  # no bar twice, none skipped across the restart
        _assert_equals_batch(outs_of_series)  # exact continuation
