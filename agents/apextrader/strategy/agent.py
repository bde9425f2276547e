"""StrategyBuilder: `features.computed` -> `signal.proposed`, one instance per track.

Each (exchange, symbol, strategy) has a `RollingStrategy` with the track's own parameters
(`ctx.spec` is `track_spec(spec, track)`). Every closed bar updates the windows, backfill included
(so they warm up); a signal is proposed only for a closed, non-backfill bar. Intrabar features are
ignored. State is rebuilt from the FEATURES stream's history at start; updates are idempotent by
bar time, so a bar seen in history and redelivered is applied once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from apextrader.bus.errors import Reject
from apextrader.contracts import Envelope, FeaturesComputed, SignalProposed, SignalProposedEvent
from apextrader.contracts.names import AgentId, EventType
from apextrader.contracts.payloads import StrategyName
from apextrader.quant.live import bar_time_ms, feature_values, nan_message
from apextrader.quant.strategies import STRATEGIES, RollingStrategy, params_for
from apextrader.runtime import Agent, AgentContext, Handler

#: Bars of history replayed per (exchange, symbol) at start, at most.
HISTORY_CAP = 5000


class StrategyBuilderAgent(Agent):
    agent_id: ClassVar[AgentId] = "strategy-builder"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        self.enabled: list[StrategyName] = [n for n in STRATEGIES if params_for(ctx.spec, n).enabled]
        self.windows: dict[tuple[str, str, StrategyName], RollingStrategy] = {}

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"features.computed": self.on_features}

    async def start(self) -> None:
        size = max((STRATEGIES[n].window(params_for(self.ctx.spec, n)) for n in self.enabled), default=1)
        markets = len(self.ctx.spec.symbols) * len(self.ctx.spec.exchanges)
        replayed = 0
        async for ev in self.ctx.history("features.computed", last=min(HISTORY_CAP, size * markets)):
            if isinstance(ev.data, FeaturesComputed) and not ev.data.intrabar and not nan_message(ev.data):
                self._update(ev.data)
                replayed += 1
        self.ctx.log.info("strategy windows rebuilt", extra={"bars": replayed, "track": self.ctx.track})

    def _window(self, data: FeaturesComputed, name: StrategyName) -> RollingStrategy:
        key = (data.exchange, data.symbol, name)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = RollingStrategy(STRATEGIES[name], params_for(self.ctx.spec, name))
        return window

    def _update(self, data: FeaturesComputed) -> list[tuple[StrategyName, SignalProposed]]:
        out = []
        time_ms, values = bar_time_ms(data), feature_values(data)
        for name in self.enabled:
            sig = self._window(data, name).update(time_ms, values)
            if sig is None:
                continue
            out.append((name, SignalProposed(
                strategy=name, exchange=data.exchange, symbol=data.symbol,
                side="long" if sig.side > 0 else "short", strength=sig.strength,
                bar_time=data.bar.open_time, price=sig.price,
                stop=sig.stop if sig.stop > 0 else None, target=sig.target if sig.target > 0 else None,
                atr=sig.atr,
            )))  # fmt: skip
        return out

    async def on_features(self, ev: Envelope) -> list[Envelope] | None:
        data = ev.data
        assert isinstance(data, FeaturesComputed)
        if data.intrabar:
            return None
        broken = nan_message(data)
        if broken:  # an upstream fault, not a warm-up: dead-letter the event with the reason
            raise Reject("invalid", broken)
        proposals = self._update(data)
        if data.backfill:
            return None
        events: list[Envelope] = []
        for i, (name, payload) in enumerate(proposals):
            events.append(
                ev.derive(SignalProposedEvent, payload, source_agent=self.agent_id, track=self.ctx.track, n=i)
            )
            self.ctx.log.info(
                "signal proposed",
                extra={
                    "strategy": name,
                    "symbol": data.symbol,
                    "side": payload.side,
                    "track": self.ctx.track,
                },
            )
        return events
