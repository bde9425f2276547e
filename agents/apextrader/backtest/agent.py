"""Backtester: the live walk-forward gate between the strategy builders and the risk managers.

It keeps the latest closed bars (with features) per (exchange, symbol) from `features.computed`,
backfill included, and every `backtest.refreshBars` new bars recomputes a walk-forward record per
strategy and track with that track's own spec (`track_spec`). Refreshes run one at a time in the
background, on a copy of the market's latest bars, while the handlers keep taking bars and signals:
a market that comes due again before its refresh ran is refreshed once, on its latest bars, so a
burst of bars (or a machine too slow for the cadence) delays records instead of the event streams. A `signal.proposed` is forwarded as
`signal.validated` only when its record's out-of-sample evidence is significant: at least
`backtest.minTrades` trades whose t-statistic against `backtest.minExpectancy` beats the threshold
corrected for the grid's trials at `backtest.significance` (docs/backtest.md). Otherwise
`signal.rejected` with the reason (including "no record yet"). Both carry the statistic, the
threshold, the trials and the method. `apex_expectancy{track,strategy}` is the lowest out-of-sample
expectancy of the strategy over the symbols with trades; `apex_walkforward_statistic`, `_threshold`
and `_accepted{track,strategy,exchange,symbol}` are each record's test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Final

from apextrader.bus.errors import Reject
from apextrader.bus.metrics import EXPECTANCY, GATE_ACCEPTED, GATE_STATISTIC, GATE_THRESHOLD
from apextrader.contracts import (
    Envelope,
    FeaturesComputed,
    SignalProposed,
    SignalRejected,
    SignalRejectedEvent,
    SignalValidated,
    SignalValidatedEvent,
    TradingPipelineSpec,
    track_spec,
)
from apextrader.contracts.names import AgentId, EventType, Track
from apextrader.contracts.payloads import StrategyName
from apextrader.quant.live import (
    BarBuffer,
    Record,
    bar_time_ms,
    bars_needed,
    feature_values,
    nan_message,
    walk_forward_record,
)
from apextrader.quant.strategies import STRATEGIES, params_for
from apextrader.runtime import Agent, AgentContext, Handler

Market = tuple[str, str]  # (exchange, symbol)

#: Niceness of the walk-forward threads: the refreshes are background work, the signal gate is on
#: the decision path, and both share the machine with the other agents.
REFRESH_NICENESS: Final = 10
#: The GIL switch interval while refreshes run beside the event loop (Python's default is 5 ms,
#: which a signal arriving during a refresh would wait for).
SWITCH_INTERVAL_S: Final = 0.0005


def _lower_priority() -> None:
    """Linux niceness is per thread and inherited by the threads it starts (the grid workers)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), REFRESH_NICENESS)


class BacktesterAgent(Agent):
    agent_id: ClassVar[AgentId] = "backtester"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        spec = ctx.pipeline.spec
        tracks: list[Track] = ["stable", "canary"] if spec.canary is not None else ["stable"]
        self.specs: dict[Track, TradingPipelineSpec] = {t: track_spec(spec, t) for t in tracks}
        self.buffer_size = max(bars_needed(s) for s in self.specs.values())
        self.refresh_bars = spec.backtest.refresh_bars
        self.buffers: dict[Market, BarBuffer] = {}
        self.records: dict[tuple[Market, StrategyName, Track], Record] = {}
        self._refresher = ThreadPoolExecutor(1, "walk-forward", initializer=_lower_priority)
        #: Markets whose refresh is due, oldest first (a dict as an ordered set).
        self._due: dict[Market, None] = {}
        self._wake = asyncio.Event()
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"features.computed": self.on_features, "signal.proposed": self.on_signal}

    async def start(self) -> None:
        markets = len(self.ctx.pipeline.spec.symbols) * len(self.ctx.pipeline.spec.exchanges)
        touched: set[Market] = set()
        async for ev in self.ctx.history("features.computed", last=self.buffer_size * markets):
            if isinstance(ev.data, FeaturesComputed) and not ev.data.intrabar and not nan_message(ev.data):
                touched.add(self._add(ev.data)[0])
        for market in touched:
            await self._refresh(market)
        self.ctx.spawn(self._refresh_due())

    async def _refresh_due(self) -> None:
        """The background refresher: due markets one at a time, each on its latest bars."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._due:
                market = next(iter(self._due))
                del self._due[market]
                try:
                    await self._refresh(market)
                except Exception as exc:  # the record stays as it was; the next due refresh retries
                    self.ctx.log.error("walk-forward refresh failed: %r", exc, extra={"market": market})

    def _add(self, data: FeaturesComputed) -> tuple[Market, bool]:
        market = (data.exchange, data.symbol)
        buffer = self.buffers.get(market)
        if buffer is None:
            buffer = self.buffers[market] = BarBuffer(self.buffer_size)
        return market, buffer.add(bar_time_ms(data), feature_values(data))

    async def _refresh(self, market: Market) -> None:
        buffer = self.buffers[market].copy()  # the handlers go on adding bars meanwhile
        for track, spec in self.specs.items():
            for name in STRATEGIES:
                if not params_for(spec, name).enabled:
                    continue
                # Off the event loop, on a low-priority thread; plain-Python kernels hold the GIL
                # only in SWITCH_INTERVAL_S slices, so events keep flowing during a refresh.
                record = await asyncio.get_running_loop().run_in_executor(
                    self._refresher, walk_forward_record, buffer, spec, name
                )
                if record is not None:
                    self.records[(market, name, track)] = record
                    self._update_gauge(track, name)
                    self._update_test_gauges(market, track, name, record)

    async def stop(self) -> None:
        self._refresher.shutdown(wait=False, cancel_futures=True)

    def _update_gauge(self, track: Track, name: StrategyName) -> None:
        values = [
            r.verdict.expectancy
            for (_, n, t), r in self.records.items()
            if t == track and n == name and r.verdict.expectancy is not None
        ]
        if values:
            EXPECTANCY.labels(track=track, strategy=name).set(min(values))

    @staticmethod
    def _update_test_gauges(market: Market, track: Track, name: StrategyName, record: Record) -> None:
        labels = {"track": track, "strategy": name, "exchange": market[0], "symbol": market[1]}
        v = record.verdict
        GATE_ACCEPTED.labels(**labels).set(1.0 if v.accepted else 0.0)
        for gauge, value in ((GATE_STATISTIC, v.statistic), (GATE_THRESHOLD, v.threshold)):
            if value is None:  # undefined (too few trades): no sample rather than a made-up number
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels.values())
            else:
                gauge.labels(**labels).set(value)

    async def on_features(self, ev: Envelope) -> None:
        data = ev.data
        assert isinstance(data, FeaturesComputed)
        if data.intrabar:
            return None
        broken = nan_message(data)
        if broken:  # a broken upstream value, not a warm-up (None): dead-letter with the reason
            raise Reject("invalid", broken)
        market, added = self._add(data)
        buffer = self.buffers[market]
        first_complete = len(buffer) == self.buffer_size and not any(k[0] == market for k in self.records)
        if added and (buffer.added % self.refresh_bars == 0 or first_complete):
            self._due[market] = None
            self._wake.set()
        return None

    async def on_signal(self, ev: Envelope) -> list[Envelope]:
        sig = ev.data
        assert isinstance(sig, SignalProposed)
        track: Track = ev.track if ev.track != "shared" else "stable"
        record = self.records.get(((sig.exchange, sig.symbol), sig.strategy, track))
        if record is None:
            have = len(self.buffers.get((sig.exchange, sig.symbol), ()))  # type: ignore[arg-type]
            need = bars_needed(self.specs.get(track, self.ctx.pipeline.spec))
            return [self._reject(ev, sig, "no_record", f"no walk-forward record yet ({have} of {need} bars)")]
        v = record.verdict
        test = {"statistic": v.statistic, "threshold": v.threshold, "trials": v.trials, "method": v.method}
        if not v.accepted or v.expectancy is None:
            return [self._reject(ev, sig, "walk_forward", v.reason, test)]
        payload = SignalValidated(
            signal=sig, expectancy=v.expectancy, expectancy_se=v.expectancy_se or 0.0,
            trades=v.trades, confidence=v.confidence, **test,
        )  # fmt: skip
        return [ev.derive(SignalValidatedEvent, payload, source_agent=self.agent_id, track=ev.track)]

    def _reject(
        self, ev: Envelope, sig: SignalProposed, rule: str, reason: str, test: dict[str, Any] | None = None
    ) -> Envelope:
        payload = SignalRejected(
            stage="backtester", rule=rule, reason=reason, strategy=sig.strategy,
            exchange=sig.exchange, symbol=sig.symbol, side=sig.side, **(test or {}),
        )  # fmt: skip
        return ev.derive(SignalRejectedEvent, payload, source_agent=self.agent_id, track=ev.track)
