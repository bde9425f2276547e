"""The EventWatcherAgent on a real nats-server: snapshots in, alerts raised and cleared on the ALERTS
stream (keeping the snapshot's correlation id), stale sources alerted by the timer, and a restart
neither repeats an active alert nor forgets it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.aio.client import Client as NatsClient

from apextrader.bus.publisher import Publisher
from apextrader.contracts import Bar, MarketAlertEvent, MarketSnapshot, MarketSnapshotEvent
from apextrader.local.nats_server import EmbeddedNats
from apextrader.watcher.agent import EventWatcherAgent
from tests.fixtures.agents import eventually, read, running, write_pipeline

T0 = datetime(2026, 1, 5, tzinfo=UTC)
PIPE = "btc-perp"


def snap(i: int, close: float, rng: float, funding: float | None = None) -> MarketSnapshotEvent:
    bar = Bar(
        open_time=T0 + timedelta(minutes=i),
        open=close,
        high=close + rng,
        low=close - rng,
        close=close,
        volume=5.0,
    )
    data = MarketSnapshot(
        exchange="bybit", symbol="ETH/USDT:USDT", timeframe="1m", bar=bar, funding_rate=funding
    )
    return MarketSnapshotEvent.new(data, pipeline=PIPE, source_agent="market-scanner")


async def alerts(js: object) -> list[MarketAlertEvent]:
    return [e for e in await read(js, PIPE, "market.alert") if isinstance(e, MarketAlertEvent)]  # type: ignore[arg-type]


async def test_alerts_raised_cleared_stale_and_restart(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    pfile = write_pipeline(
        tmp_path, watcher={"volatilityZ": 4.0, "staleAfter": "2s", "spikeSeverity": "reduce"}
    )
    r = random.Random(3)
    js = nc.jetstream()
    async with running(EventWatcherAgent, "event-watcher", nats_server, pfile, track="shared"):
        pub = Publisher(js)
        for i in range(80):
            await pub.publish(snap(i, 100 + r.uniform(-0.1, 0.1), r.uniform(0.1, 0.3)))
        spike = snap(80, 104.0, 4.0, funding=0.002)
        await pub.publish(spike)
        calm = snap(81, 104.0, 0.2, funding=0.0001)
        await pub.publish(calm)

        async def two_cleared() -> bool:
            return sum(not a.data.active for a in await alerts(js)) >= 2

        await eventually(two_cleared, what="spike and funding raised and cleared")
        got = await alerts(js)
        raised = {(a.data.kind, a.data.severity) for a in got if a.data.active}
        assert raised == {("volatility_spike", "reduce"), ("funding_extreme", "reduce")}
        for a in got:
            if a.data.kind in ("volatility_spike", "funding_extreme"):
                cause = spike if a.data.active else calm
                assert a.correlation_id == cause.correlation_id and a.causation_id == cause.id
        # No data for 2 s: the timer raises stale_data for the source (exchange-wide).

        async def stale_raised() -> bool:
            return any(a.data.kind == "stale_data" and a.data.active for a in await alerts(js))

        await eventually(stale_raised, limit_s=10, what="stale source alert")
        stale = next(a for a in await alerts(js) if a.data.kind == "stale_data")
        assert stale.data.exchange == "bybit" and stale.data.symbol is None and stale.data.severity == "halt"
    count = len(await alerts(js))
    # Restarted: the stale alert is known active, so it is not raised again; fresh data clears it.
    async with running(EventWatcherAgent, "event-watcher", nats_server, pfile, track="shared") as run:
        watcher = run.agent
        assert isinstance(watcher, EventWatcherAgent)
        assert ("stale_data", "bybit", None) in watcher.watcher.active
        await Publisher(js).publish(snap(82, 104.0, 0.2))

        async def stale_cleared() -> bool:
            return any(a.data.kind == "stale_data" and not a.data.active for a in await alerts(js))

        await eventually(stale_cleared, what="stale cleared by fresh data")
        after = await alerts(js)
    assert len(after) == count + 1
