"""FeatureEngineer: `market.snapshot` → `features.computed`, one `StreamingFeatures` per series.

- Uses only `quality == "ok"` snapshots (others are acknowledged and ignored: docs/conventions.md §6).
- A closed bar updates the series' state and emits features (`backfill` copied from the snapshot).
  With `agents.feature-engineer.intrabar: true`, a forming bar emits features computed on a
  copy of the state (`intrabar: true`), leaving the state untouched.
- Idempotent by bar time: the last bar again re-emits the same event (same derived id, so JetStream
  drops it); an older bar changes nothing and emits nothing.
- Bad input (a timeframe other than the spec's, taker-buy volume above volume, ...) raises
  `Reject`: the snapshot goes to the DLQ with the reason and the state is untouched.
- After a restart the state is rebuilt before any event is handled, from this agent's own output:
  the bars of the `features.computed` events it published (`ctx.history`, oldest first). Those
  are exactly the bars it had applied; snapshots not yet processed are still pending on its
  durable consumer and arrive next. The rebuilt state equals the uninterrupted one when the
  FEATURES stream still holds the series from its first bar (otherwise the long EMAs converge
  within a few hundred bars).
"""

from __future__ import annotations

from collections.abc import Mapping

from apextrader.bus.errors import Reject
from apextrader.contracts import Envelope, FeaturesComputed, FeaturesComputedEvent, MarketSnapshot
from apextrader.contracts.names import EventType
from apextrader.quant.indicators import InvalidMarketData, StreamingFeatures
from apextrader.runtime import Agent, AgentContext, Handler

SeriesKey = tuple[str, str]


class FeatureEngineerAgent(Agent):
    agent_id = "feature-engineer"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        settings = ctx.spec.agent("feature-engineer")
        self.intrabar = settings.intrabar
        self.history_events = settings.history_events
        self.series: dict[SeriesKey, StreamingFeatures] = {}
        self.rebuilt = 0

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"market.snapshot": self.on_snapshot}

    async def start(self) -> None:
        # The runner calls start() before its consumers fetch; a bar replayed here and then
        # redelivered (published but not acked before a crash) applies once: idempotent by time.
        async for event in self.ctx.history("features.computed", last=self.history_events):
            out = event.data
            applied = (
                isinstance(out, FeaturesComputed)
                and not out.intrabar
                and self._state(out).update(out.bar) is not None
            )
            self.rebuilt += int(applied)
        self.ctx.log.info("features state rebuilt", extra={"bars": self.rebuilt, "series": len(self.series)})

    def _state(self, snap: MarketSnapshot | FeaturesComputed) -> StreamingFeatures:
        key = (snap.exchange, snap.symbol)
        state = self.series.get(key)
        if state is None:
            state = self.series[key] = StreamingFeatures()
        return state

    async def on_snapshot(self, event: Envelope) -> list[Envelope]:
        snap = event.data
        assert isinstance(snap, MarketSnapshot)
        if snap.quality != "ok" or (not snap.closed and not self.intrabar):
            return []
        if snap.timeframe != self.ctx.spec.timeframe:
            raise Reject(
                "invalid", f"timeframe {snap.timeframe} is not the pipeline's {self.ctx.spec.timeframe}"
            )
        state = self._state(snap)
        try:
            row = state.update(snap.bar) if snap.closed else state.peek(snap.bar)
        except InvalidMarketData as exc:
            raise Reject("invalid", str(exc)) from None
        if row is None:
            return []
        payload = FeaturesComputed(
            exchange=snap.exchange,
            symbol=snap.symbol,
            timeframe=snap.timeframe,
            bar=snap.bar,
            features=row.to_features(),
            backfill=snap.backfill,
            intrabar=not snap.closed,
        )
        return [event.derive(FeaturesComputedEvent, payload, source_agent=self.agent_id)]
