"""MarketScanner: publishes `market.snapshot` events from the spec's source (synthetic, replay, ccxt).

At start it publishes `source.backfillBars` closed bars per (exchange, symbol) with `backfill: true`,
then live snapshots. Publishes are pipelined per batch (up to `PUBLISH_WINDOW` PubAcks in flight)
and the next batch is taken only when the bus has acknowledged this one (backpressure).

Health: `apex_source_up{exchange}` follows the source's per-exchange health; a `market.alert`
(`source_down`, severity `halt`, `active: true`) is published when an exchange's data stops and
another (`active: false`) when it returns; `/ready` is false while any exchange is down.

Closed bars get a deterministic event id (pipeline, exchange, symbol, timeframe, bar time), so a
restarted scanner that republishes its backfill inside JetStream's duplicate window is de-duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping

from apextrader.bus.metrics import SOURCE_UP
from apextrader.contracts import Envelope, MarketAlert, MarketAlertEvent, MarketSnapshot, MarketSnapshotEvent
from apextrader.contracts.names import EventType
from apextrader.contracts.payloads import Exchange
from apextrader.market.factory import build_source
from apextrader.market.sources.base import Batch, MarketSource
from apextrader.runtime import Agent, AgentContext, Handler

PUBLISH_WINDOW = 512
#: Batches produced ahead of the publisher.
PIPELINE_DEPTH = 4


def snapshot_id(pipeline: str, snap: MarketSnapshot) -> str | None:
    """Deterministic id for a closed bar; None (a fresh id) for a forming one."""
    if not snap.closed:
        return None
    key = f"{pipeline}|{snap.exchange}|{snap.symbol}|{snap.timeframe}|{snap.bar.open_time.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class MarketScannerAgent(Agent):
    agent_id = "market-scanner"

    def __init__(self, ctx: AgentContext, source: MarketSource | None = None) -> None:
        super().__init__(ctx)
        self.source = source or build_source(ctx.spec)
        self.published = 0
        self._opened = False
        self._alerts: asyncio.Queue[MarketAlertEvent] = asyncio.Queue()
        self.source.health.subscribe(self._on_health)

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {}  # a producer only

    def is_ready(self) -> bool:
        return self._opened and self.source.health.all_up

    async def start(self) -> None:
        for exchange in self.source.health.exchanges:
            SOURCE_UP.labels(exchange=exchange).set(1)
        self.ctx.spawn(self._publish_alerts())
        self.ctx.spawn(self._run())

    async def stop(self) -> None:
        await self.source.close()

    def _on_health(self, exchange: Exchange, up: bool, reason: str) -> None:
        SOURCE_UP.labels(exchange=exchange).set(1 if up else 0)
        alert = MarketAlert(
            kind="source_down",
            severity="halt",
            active=not up,
            exchange=exchange,
            reason=f"{exchange} market data {'is back' if up else 'stopped'}: {reason}",
        )
        self.ctx.log.warning(
            "source health changed", extra={"exchange": exchange, "up": up, "reason": reason}
        )
        self._alerts.put_nowait(
            MarketAlertEvent.new(alert, pipeline=self.ctx.pipeline.name, source_agent=self.agent_id)
        )

    async def _publish_alerts(self) -> None:
        while True:
            alert = await self._alerts.get()
            await self.ctx.publish(alert)

    async def _run(self) -> None:
        await self.source.open()
        self._opened = True
        log = self.ctx.log
        log.info("source open", extra={"source": self.source.kind})
        await self.pump(self.source.backfill())
        log.info("backfill published", extra={"snapshots": self.published})
        await self.pump(self.source.live())
        log.info("source finished", extra={"snapshots": self.published})

    async def pump(self, batches: AsyncIterator[Batch]) -> None:
        """Publish every batch, producing the next while the bus acknowledges this one (the
        source runs in a task feeding a short queue, so waiting for PubAcks never idles it)."""
        queue: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)

        async def produce() -> None:
            try:
                async for batch in batches:
                    await queue.put(batch)
                await queue.put(None)
            except Exception as exc:  # handed to the publishing side, which raises it
                await queue.put(exc)

        producer = asyncio.create_task(produce())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                await self.publish_batch(item)
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def publish_batch(self, batch: Batch) -> None:
        pipeline = self.ctx.pipeline.name
        events: list[Envelope] = [
            MarketSnapshotEvent.new(
                snap, pipeline=pipeline, source_agent=self.agent_id, id=snapshot_id(pipeline, snap)
            )
            for snap in batch
        ]
        for i in range(0, len(events), PUBLISH_WINDOW):
            await asyncio.gather(*(self.ctx.publish(ev) for ev in events[i : i + PUBLISH_WINDOW]))
        self.published += len(events)
