"""ExecutionAgent: turns `order.approved` into fills, through one `ExecutionVenue`.

Paper (the default) is `PaperVenue`: fills walked through the order book in effect when the order
reaches the simulated exchange (decision time + the latency model), or the bar model when the
market has no depth. Live only when the guard's three locks are open: `CcxtVenue`, with the
approved event id as client order id. The same code path handles both:

- an outcome the venue cannot vouch for (UNKNOWN) raises `NotYet`: the event is redelivered and the
  order looked up again, and no `order.rejected` is published, so the risk manager keeps its
  exposure reserved; meanwhile the poller looks the order up too;
- an `order.approved` the market has left more than `risk.signalExpiryBars` bars behind (a late
  redelivery, a DLQ replay) is refused with reason `expired`;
- at start, orders reported as submitted but not settled are rebuilt and reconciled with the
  venue's open orders (`execution/reconcile.py`), then polled until they settle; approvals with no
  known outcome (also those the DLQ holds) are looked up by the poller like an UNKNOWN one.

Metrics: `apex_pipeline_latency_seconds` (origin_ts -> decision), `apex_slippage_bps` (adverse
only), `apex_orders_total` by state.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from apextrader.bus import metrics
from apextrader.bus.errors import NotYet
from apextrader.contracts import Envelope, MarketSnapshotEvent, OrderApprovedEvent, OrderFilledEvent, utcnow
from apextrader.contracts.names import EventType
from apextrader.contracts.units import timeframe_seconds
from apextrader.execution.events import OrderEvents
from apextrader.execution.guard import Credentials, LiveModeRefused, execution_mode
from apextrader.execution.reconcile import Reported, rebuild
from apextrader.runtime.agent import Agent, Handler
from apextrader.runtime.context import AgentContext
from apextrader.venues import ExecutionVenue, OrderState, OrderTracker, Outcome, PaperVenue
from apextrader.venues.paper import BarHistory, BarMark

#: Seconds between polls of open (and unknown) live orders.
POLL_S = 2.0

__all__ = ["ExecutionAgent", "LiveModeRefused"]


@dataclass
class OpenOrder:
    """An order still working at the venue (or whose outcome the venue has not told yet)."""

    event: OrderApprovedEvent
    exchange_order_id: str | None
    tracker: OrderTracker
    fills: int = 0


class ExecutionAgent(Agent):
    agent_id = "execution"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        # Raises LiveModeRefused: the process exits with the guard's message and never trades.
        self.mode = execution_mode(spec.mode, list(spec.exchanges), os.environ)
        self.venue: ExecutionVenue = self._venue() if self.mode.mode == "live" else PaperVenue(spec.execution)
        self.events = OrderEvents(ctx.track, paper=not self.venue.live)
        self._latency = metrics.PIPELINE_LATENCY.labels(track=ctx.track)
        self.bar_seconds = timeframe_seconds(spec.timeframe)
        #: Latest market time per instrument: (bar open time, closed), to date approvals.
        self.marks: dict[tuple[str, str], tuple[datetime, bool]] = {}
        #: Recent live bars per instrument by publish time: the market when an order was approved.
        self.market: dict[tuple[str, str], BarHistory] = {}
        self.open: dict[str, OpenOrder] = {}
        #: Orders whose submit outcome is unknown, looked up by the poller too.
        self.unknown: dict[str, OrderApprovedEvent] = {}
        self.reported: dict[str, Reported] = {}
        #: Orders whose age was judged (fresh enough) in this process.
        self.dated: set[str] = set()
        #: Results per client order id: a redelivered order gets the same events, never a new fill.
        self.done: OrderedDict[str, list[Envelope]] = OrderedDict()

    def _venue(self) -> ExecutionVenue:
        from apextrader.venues.ccxt_venue import CcxtVenue  # ccxt (~100 MB) only for live trading

        ex_spec = self.ctx.spec.execution
        secrets = [s for c in self.mode.credentials.values() for s in c.secrets()]
        exchanges = {ex: self.make_exchange(ex, c) for ex, c in self.mode.credentials.items()}
        fees: dict[str, float] = {ex: float(bps) / 1e4 for ex, bps in ex_spec.taker_fee_bps.items()}
        return CcxtVenue(
            exchanges,
            secrets,
            max_retries=ex_spec.max_retries,
            grace_s=ex_spec.lookup_grace_s,
            fee_rates=fees,
        )

    def make_exchange(self, exchange: str, creds: Credentials) -> object:
        """The ccxt client for one exchange (a subclass may supply its own HTTP session)."""
        from apextrader.venues.ccxt_venue import build_exchange

        return build_exchange(exchange, creds)

    @property
    def live(self) -> ExecutionVenue | None:
        return self.venue if self.venue.live else None

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"order.approved": self.on_order, "market.snapshot": self.on_snapshot}

    async def start(self) -> None:
        self.ctx.log.info("execution mode", extra={"mode": self.mode.mode, "why": self.mode.why})
        instruments: list[tuple[str, str]] = [
            (ex, sym) for ex in self.ctx.spec.exchanges for sym in self.ctx.spec.symbols
        ]
        state = await rebuild(self.ctx, self.venue, self.events, instruments)
        self.reported = state.reported
        for coid, (ev, exid) in state.open.items():
            rep = self.reported.get(coid, Reported())
            tracker = OrderTracker.resume(coid, ev.data.amount, rep.filled)
            self.open[coid] = OpenOrder(ev, exid, tracker, fills=rep.fills)
            self.done[coid] = []  # its events come from the poller; a redelivery adds nothing
        for e in state.publish:
            await self.ctx.publish(e)
        self.unknown.update(state.unknown)
        if self.venue.live:
            self.ctx.spawn(self._poll_open())

    async def stop(self) -> None:
        if not self.venue.live:
            return
        if self.ctx.spec.execution.cancel_on_stop:
            for coid in list(self.open):
                await self._cancel(coid, "agent stopping (execution.cancelOnStop)")
        await self.venue.close()

    # --- market data ---------------------------------------------------------------------------
    async def on_snapshot(self, ev: Envelope) -> None:
        assert isinstance(ev, MarketSnapshotEvent)
        snap = ev.data
        inst = (snap.exchange, snap.symbol)
        seen = self.marks.get(inst)
        mark = (snap.bar.open_time, snap.closed)
        if seen is None or mark > seen:
            self.marks[inst] = mark
        if not snap.backfill:
            hist = self.market.get(inst)
            if hist is None:
                hist = self.market[inst] = BarHistory()
            hist.add(BarMark(ev.timestamp, snap.bar.open_time, snap.bar.open, snap.bar.close))
        self.venue.observe(ev.timestamp, snap)

    def _expired(self, ev: OrderApprovedEvent) -> str | None:
        """Why the order is too old to execute (None: it is not): the market has moved more than
        `risk.signalExpiryBars` bars since the approval (the risk gate judged the signal's age at
        approval). An approval older than the bars in memory (a DLQ replay, a restart) is dated by
        its signal's bar, as the risk gate counts; with no market data at all, by wall-clock age."""
        o, limit = ev.data, self.ctx.spec.risk.signal_expiry_bars
        inst = (o.exchange, o.symbol)
        seen, hist = self.marks.get(inst), self.market.get(inst)
        then = hist.at(ev.timestamp) if hist is not None else None
        if seen is not None and then is not None:
            behind = (seen[0] - then.open_time).total_seconds() / self.bar_seconds
            since = "its approval"
        elif seen is not None and o.bar_time is not None:
            opened, closed = seen
            behind = (opened - o.bar_time).total_seconds() / self.bar_seconds - (0 if closed else 1)
            since = "its signal's bar"
        else:
            behind = (utcnow() - ev.timestamp).total_seconds() / self.bar_seconds
            since = "its approval (wall clock)"
        if behind <= limit:
            return None
        return f"the market has moved {behind:.0f} bars since {since} (orders expire after {limit})"

    # --- orders --------------------------------------------------------------------------------
    async def on_order(self, ev: Envelope) -> Sequence[Envelope]:
        assert isinstance(ev, OrderApprovedEvent)
        coid = ev.data.client_order_id
        if coid in self.done:
            return self.done[coid]
        rep = self.reported.get(coid)
        if rep is not None and rep.done:
            return self._settle(coid, [])  # settled before a restart: its events are on the stream
        # Judged once per order: waiting for the venue (NotYet) does not make an order stale.
        why = None if coid in self.dated or rep is not None else self._expired(ev)
        self.dated.add(coid)
        if why is not None:
            # A live venue may hold it all the same (sent just before a crash): ask before refusing.
            found = await self.venue.refresh(ev.data, None) if self.venue.live else None
            if found is None or found.unknown:
                return self._settle(coid, [self.events.reject(ev, "expired", why)])
            outcome = found
        else:
            outcome = await self.venue.submit(ev.data, ev.timestamp, rep.filled if rep else 0.0)
        if coid in self.done:  # the poller adopted it while the venue answered us
            return self.done[coid]
        if outcome.unknown:
            if self.venue.live:
                self.unknown[coid] = ev
            raise NotYet(outcome.message)
        self.unknown.pop(coid, None)
        self._latency.observe(max(0.0, (utcnow() - ev.origin_ts).total_seconds()))
        return self._settle(coid, self._apply(ev, outcome, rep))

    def _settle(self, coid: str, out: list[Envelope]) -> list[Envelope]:
        self.done[coid] = out
        self.dated.discard(coid)
        if len(self.done) > 100_000:
            self.done.popitem(last=False)
        return out

    def _apply(self, ev: OrderApprovedEvent, outcome: Outcome, rep: Reported | None) -> list[Envelope]:
        """Events for a known outcome; a still-working order is tracked for the poller."""
        o = ev.data
        if outcome.state is OrderState.REJECTED:
            reason = outcome.reason or "exchange_rejected"
            return [self.events.reject(ev, reason, outcome.message, outcome.retryable)]
        out: list[Envelope] = []
        tracker = OrderTracker.resume(o.client_order_id, o.amount, rep.filled if rep else 0.0)
        if outcome.exchange_order_id:
            out.append(self.events.submitted(ev, outcome.exchange_order_id))
        first = rep.fills if rep else 0
        out += self.events.progress(ev, tracker, outcome, first, self.venue.fee_rate(o.exchange))
        if not tracker.done and outcome.exchange_order_id:
            fills = first + sum(isinstance(e, OrderFilledEvent) for e in out)
            self.open[o.client_order_id] = OpenOrder(ev, outcome.exchange_order_id, tracker, fills=fills)
        return out

    async def _poll_open(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            await self.poll_once()

    async def poll_once(self) -> None:
        """One round: open orders refreshed, unknown ones looked up (adopted once the venue answers)."""
        for coid, ev in list(self.unknown.items()):
            outcome = await self.venue.refresh(ev.data, None)
            if not outcome.unknown and coid in self.unknown and coid not in self.done:
                self.unknown.pop(coid)
                for e in self._settle(coid, self._apply(ev, outcome, self.reported.get(coid))):
                    await self.ctx.publish(e)
        for coid, op in list(self.open.items()):
            outcome = await self.venue.refresh(op.event.data, op.exchange_order_id)
            if outcome.unknown:
                self.ctx.log.warning("poll failed", extra={"client_order_id": coid, "why": outcome.message})
                continue
            await self._publish_progress(op, outcome)

    async def _publish_progress(self, op: OpenOrder, outcome: Outcome) -> None:
        coid = op.event.data.client_order_id
        rate = self.venue.fee_rate(op.event.data.exchange)
        events = self.events.progress(op.event, op.tracker, outcome, op.fills, rate)
        op.fills += sum(isinstance(e, OrderFilledEvent) for e in events)
        for e in events:
            await self.ctx.publish(e)
        if op.tracker.done:
            self.open.pop(coid, None)

    async def _cancel(self, coid: str, reason: str) -> None:
        op = self.open.pop(coid)
        outcome = await self.venue.cancel(op.event.data, op.exchange_order_id)
        if outcome.unknown:
            self.ctx.log.error("cancel failed", extra={"client_order_id": coid, "why": outcome.message})
            return
        await self._publish_progress(op, outcome)
        self.ctx.log.info("cancelled open order", extra={"client_order_id": coid, "reason": reason})
