"""MarketScanner: publishes `market.snapshot` events from the spec's source (synthetic, replay, ccxt).

At start it publishes `source.backfillBars` closed bars per (exchange, symbol) with `backfill: true`,
then live snapshots. Snapshots are encoded straight to bytes (`market.wire`) and published
pipelined per batch (up to `PUBLISH_WINDOW` PubAcks outstanding, every one checked, a missing or
failed one retried with the same id); the next batch is taken only when the bus has acknowledged
this one (backpressure).

Health: `apex_source_up{exchange}` follows the source's per-exchange health; a `market.alert`
(`source_down`, severity `halt`, `active: true`) is published when an exchange's data stops and
another (`active: false`) when it returns; `/ready` is false while any exchange is down.

Closed bars get a deterministic event id (pipeline, exchange, symbol, timeframe, bar time), so a
restarted scanner that republishes its backfill inside JetStream's duplicate window is de-duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Mapping

from apextrader.bus.metrics import SOURCE_UP
from apextrader.bus.pipelined import Outgoing
from apextrader.bus.topology import subject
from apextrader.contracts import MarketAlert, MarketAlertEvent
from apextrader.contracts.envelope import utcnow
from apextrader.contracts.names import EventType
from apextrader.contracts.payloads import Exchange
from apextrader.market.factory import build_source
from apextrader.market.sources.base import Batch, MarketSource
from apextrader.market.wire import (
    SNAPSHOT,
    TRACK,
    AnySnapshot,
    coalesce_of,
    encode_snapshot_event,
    snapshot_id,
    wire_data,
)
from apextrader.runtime import Agent, AgentContext, Handler
from apextrader.runtime.memory import trim

__all__ = ["BACKLOG", "PUBLISH_WINDOW", "MarketScannerAgent", "snapshot_id"]

PUBLISH_WINDOW = 1024
#: Snapshots produced ahead of the publisher.
BACKLOG = PUBLISH_WINDOW


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
        trim()  # the backfill's burst of snapshots is garbage now (~10 MB of heap kept otherwise)
        await self.pump(self.source.live())
        log.info("source finished", extra={"snapshots": self.published})

    async def pump(self, batches: AsyncIterator[Batch]) -> None:
        """Publish every batch, producing the next ones while the bus acknowledges these: the
        source runs in a task up to `BACKLOG` snapshots ahead, and the publisher takes everything
        produced so far (up to `PUBLISH_WINDOW`) as one round, so small batches (one tick of a few
        symbols) still fill the window instead of waiting a round trip each."""
        backlog = _Backlog(BACKLOG)

        async def produce() -> None:
            try:
                async for batch in batches:
                    await backlog.put(batch)
                await backlog.close()
            except Exception as exc:  # handed to the publishing side, which raises it
                await backlog.close(exc)

        producer = asyncio.create_task(produce())
        try:
            while snaps := await backlog.take(PUBLISH_WINDOW):
                await self.publish_batch(snaps)
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def publish_batch(self, batch: Batch) -> None:
        """Encode every snapshot straight to bytes (`market.wire`) and publish them pipelined,
        every PubAck checked (`Publisher.publish_many`); forming bars marked coalescible."""
        pipeline = self.ctx.pipeline.name
        subj = subject(pipeline, SNAPSHOT, TRACK)
        now = utcnow()
        out = []
        for snap in batch:
            data = wire_data(snap)
            eid, body = encode_snapshot_event(
                data,
                pipeline=pipeline,
                source_agent=self.agent_id,
                event_id=snapshot_id(pipeline, data),
                now=now,
            )
            out.append(Outgoing(subj, body, eid, eid, SNAPSHOT, coalesce_of(data)))
        await self.ctx.publisher.publish_many(out, window=PUBLISH_WINDOW)
        self.published += len(out)


class _Backlog:
    """Batches between the source task and the publisher, bounded by snapshots, not batches."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._batches: deque[Batch] = deque()
        self._size = 0
        self._end = False
        self._error: BaseException | None = None
        self._changed = asyncio.Condition()

    async def put(self, batch: Batch) -> None:
        if not batch:
            return  # nothing to publish; [] from `take` means the end
        async with self._changed:
            await self._changed.wait_for(lambda: self._size < self.limit)
            self._batches.append(batch)
            self._size += len(batch)
            self._changed.notify_all()

    async def close(self, error: BaseException | None = None) -> None:
        """No more batches (after `error`, raised by `take` once the backlog is drained)."""
        async with self._changed:
            self._end, self._error = True, error
            self._changed.notify_all()

    async def take(self, most: int) -> list[AnySnapshot]:
        """Whole batches in order, at least one and up to `most` snapshots (more only if the first
        batch is larger); [] at the end."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._batches) or self._end)
            out: list[AnySnapshot] = []
            while self._batches and (not out or len(out) + len(self._batches[0]) <= most):
                batch = self._batches.popleft()
                out += batch
                self._size -= len(batch)
            self._changed.notify_all()
        if not out and self._error is not None:
            raise self._error
        return out
