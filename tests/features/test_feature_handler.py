"""The FeatureEngineer's handler on its own: intrabar, quality, idempotency by bar time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from apextrader.bus.errors import Reject
from apextrader.contracts import FeaturesComputed, MarketSnapshot, MarketSnapshotEvent
from apextrader.contracts.agent_spec import FeatureEngineerSpec
from apextrader.features.agent import FeatureEngineerAgent
from apextrader.market.sources.synthetic import SyntheticSource
from apextrader.market.wire import as_model


def _agent(intrabar: bool) -> FeatureEngineerAgent:
    settings = FeatureEngineerSpec(intrabar=intrabar)
    spec = SimpleNamespace(timeframe="1m", agent=lambda _id: settings)
    ctx: Any = SimpleNamespace(spec=spec, log=None)
    return FeatureEngineerAgent(ctx)


def _events(n_bars: int) -> list[MarketSnapshotEvent]:
    """Per bar: a forming snapshot at half time, then the closed bar (one series)."""
    source = SyntheticSource(exchanges=["bybit"], symbols=["BTC/USDT:USDT"], backfill_bars=0)
    out = []
    for _ in range(n_bars):
        bars = source._next()
        for snap in (*source._snapshots(bars, backfill=False, fraction=0.5),
                     *source._snapshots(bars, backfill=False)):  # fmt: skip
            out.append(
                MarketSnapshotEvent.new(as_model(snap), pipeline="btc-perp", source_agent="market-scanner")
            )
    return out


async def test_intrabar_features_come_from_a_copy_of_the_state() -> None:
    events = _events(60)
    plain, intra = _agent(False), _agent(True)
    plain_out = [o for e in events for o in await plain.on_snapshot(e)]
    intra_out = [o for e in events for o in await intra.on_snapshot(e)]
    assert len(plain_out) == 60 and len(intra_out) == 120
    closed_only = [o for o in intra_out if not o.data.intrabar]  # type: ignore[attr-defined]
    assert [o.data for o in closed_only] == [o.data for o in plain_out]  # forming bars left no trace
    forming = [o.data for o in intra_out if o.data.intrabar]  # type: ignore[attr-defined]
    assert all(isinstance(f, FeaturesComputed) and f.bar.volume > 0 for f in forming)
    assert forming[-1].features.ema20 is not None  # type: ignore[attr-defined]


async def test_only_ok_data_and_idempotent_by_bar_time() -> None:
    events = [e for e in _events(30) if e.data.closed]
    agent = _agent(False)
    first = [await agent.on_snapshot(e) for e in events]
    again = await agent.on_snapshot(events[-1])  # redelivered: same derived event, same id
    assert [o.id for o in again] == [o.id for o in first[-1]]
    assert await agent.on_snapshot(events[5]) == []  # an older bar changes nothing
    snap = events[-1].data
    assert isinstance(snap, MarketSnapshot)
    nxt = snap.bar.model_copy(update={"open_time": snap.bar.open_time.replace(year=2030)})
    flagged = MarketSnapshotEvent.new(
        snap.model_copy(update={"bar": nxt, "quality": "crossed"}), pipeline="btc-perp",
        source_agent="market-scanner",
    )  # fmt: skip
    assert await agent.on_snapshot(flagged) == []
    assert agent.series[("bybit", "BTC/USDT:USDT")].bars == 30
    wrong = MarketSnapshotEvent.new(
        snap.model_copy(update={"bar": nxt, "timeframe": "1h"}), pipeline="btc-perp",
        source_agent="market-scanner",
    )  # fmt: skip
    with pytest.raises(Reject) as info:
        await agent.on_snapshot(wrong)
    assert info.value.reason == "invalid" and agent.series[("bybit", "BTC/USDT:USDT")].bars == 30
