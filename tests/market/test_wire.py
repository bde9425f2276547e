"""Snapshots encoded without models are the bytes pydantic writes, and valid events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from apextrader.bus.pipelined import Outgoing
from apextrader.contracts import MarketSnapshot, MarketSnapshotEvent, decode_event
from apextrader.market.agent import MarketScannerAgent
from apextrader.market.snapshots import snapshot
from apextrader.market.sources.base import Batch
from apextrader.market.sources.synthetic import SyntheticSource
from apextrader.market.wire import encode_snapshot_event, snapshot_id, wire_data

NOW = datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)


def _synthetic_snapshots() -> list[Any]:
    source = SyntheticSource(exchanges=["binance", "okx"], symbols=["BTC/USDT:USDT", "DOGE/USDT:USDT"],
                             seed=5, depth_levels=25)  # fmt: skip
    out: list[Any] = []
    for i in range(150):  # closed, forming and backfill bars, liquidation clusters, calm and stress
        bars = source._next()
        out += source._snapshots(bars, backfill=i < 50, fraction=1.0 if i % 3 else 0.37)
    return out


def test_synthetic_wire_snapshots_are_valid_and_byte_identical_to_pydantic() -> None:
    snaps = _synthetic_snapshots()
    assert any(s.data["liquidations"] for s in snaps) and any(not s.data["closed"] for s in snaps)
    for snap in snaps:
        eid, body = encode_snapshot_event(
            wire_data(snap), pipeline="btc-perp", source_agent="market-scanner", event_id=None, now=NOW
        )
        event = decode_event(body)  # validates every field
        assert isinstance(event, MarketSnapshotEvent) and event.id == eid == event.correlation_id
        assert event.to_json() == body  # pydantic writes the very same bytes


def test_models_from_other_sources_encode_like_envelope_new() -> None:
    bar = {"open_time": NOW, "open": 1e-8, "high": 2.5e-7, "low": 1e-9, "close": 1e-8, "volume": 0.0}
    model = snapshot(exchange="bybit", symbol="X/USDT:USDT", timeframe="5m", bar=bar, closed=False,
                     backfill=False, seq=7, quality="stale", funding_rate=-1.5e-5)  # fmt: skip
    eid, body = encode_snapshot_event(wire_data(model), pipeline="p", source_agent="market-scanner",
                                      event_id="ab" * 16, now=NOW)  # fmt: skip
    expected = MarketSnapshotEvent.new(model, pipeline="p", source_agent="market-scanner", id=eid)
    expected = expected.model_copy(update={"timestamp": NOW, "origin_ts": NOW})
    assert body == expected.to_json()
    assert snapshot_id("p", model) is None  # a forming bar gets a fresh id


class _Recorder:
    def __init__(self) -> None:
        self.rounds: list[list[Outgoing]] = []

    async def publish_many(self, messages: Sequence[Outgoing], window: int = 512) -> int:
        self.rounds.append(list(messages))
        return 0


async def test_pump_coalesces_small_batches_keeps_order_and_raises_the_source_error() -> None:
    snaps = _synthetic_snapshots()
    recorder = _Recorder()
    ctx: Any = SimpleNamespace(pipeline=SimpleNamespace(name="btc-perp"), publisher=recorder, spec=None)
    agent = MarketScannerAgent(ctx, source=SyntheticSource(exchanges=["okx"], symbols=["BTC/USDT:USDT"]))

    async def batches() -> AsyncIterator[Batch]:
        for i in range(0, len(snaps), 4):
            yield snaps[i : i + 4]
            yield []  # nothing this tick: skipped, not the end
        raise RuntimeError("exchange gone")

    with pytest.raises(RuntimeError, match="exchange gone"):
        await agent.pump(batches())
    published = [m for r in recorder.rounds for m in r]
    assert len(published) == len(snaps) == agent.published
    assert len(recorder.rounds) < len(snaps) / 4  # several 4-snapshot batches per round
    ids = [snapshot_id("btc-perp", s) for s in snaps]
    assert [m.event_id for m in published if m.event_id in ids] == [i for i in ids if i is not None]
    assert all(isinstance(decode_event(m.body).data, MarketSnapshot) for m in published[:20])
