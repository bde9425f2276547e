"""EventWatcherAgent: `market.snapshot` in, `market.alert` out (raised and cleared).

At start it restores which alerts are active from the ALERTS stream (so a restart neither repeats nor
forgets one) and warms its statistics from recent snapshots. A timer checks every source for stale
data, since a silent exchange sends no snapshot to react to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from apextrader.contracts import Envelope, MarketAlertEvent, MarketSnapshotEvent, utcnow
from apextrader.contracts.names import EventType
from apextrader.runtime.agent import Agent, Handler
from apextrader.runtime.context import AgentContext
from apextrader.watcher.engine import Watcher

#: Seconds between stale-source checks.
STALE_CHECK_S = 1.0
WARMUP_SNAPSHOTS = 5000


class EventWatcherAgent(Agent):
    agent_id = "event-watcher"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        self.watcher = Watcher(ctx.spec.watcher, ctx.spec.timeframe)

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"market.snapshot": self.on_snapshot}

    async def start(self) -> None:
        async for ev in self.ctx.history("market.alert", last=2000):
            if isinstance(ev, MarketAlertEvent):
                a = ev.data
                key = (a.kind, a.exchange, a.symbol)
                if a.active:
                    self.watcher.active[key] = a
                else:
                    self.watcher.active.pop(key, None)
        async for ev in self.ctx.history("market.snapshot", last=WARMUP_SNAPSHOTS):
            if isinstance(ev, MarketSnapshotEvent):
                self.watcher.on_snapshot(ev.data.model_copy(update={"backfill": True}), ev.timestamp)
        self.ctx.spawn(self._stale_loop())

    async def on_snapshot(self, ev: Envelope) -> Sequence[Envelope]:
        assert isinstance(ev, MarketSnapshotEvent)
        alerts = self.watcher.on_snapshot(ev.data, utcnow())
        for a in alerts:
            self.ctx.log.info("alert", extra={"kind": a.kind, "severity": a.severity, "active": a.active})
        return [ev.derive(MarketAlertEvent, a, source_agent=self.agent_id, n=i) for i, a in enumerate(alerts)]

    async def _stale_loop(self) -> None:
        while True:
            await asyncio.sleep(STALE_CHECK_S)
            for a in self.watcher.check_stale(utcnow()):
                self.ctx.log.warning(
                    "alert", extra={"kind": a.kind, "severity": a.severity, "active": a.active}
                )
                await self.ctx.publish(
                    MarketAlertEvent.new(a, pipeline=self.ctx.pipeline.name, source_agent=self.agent_id)
                )
