"""ExecutionAgent: turns `order.approved` into fills.

Paper (the default): fills walked through the order book in effect when the order reaches the
simulated exchange (decision time + the latency model), partial fills when depth runs out (the rest
is cancelled), fees by exchange tier. Live only when the guard's three locks are open: ccxt orders
with the approved event id as client order id, looked up before any submit, open orders polled and
cancelled on graceful stop if `execution.cancelOnStop`.

Metrics: `apex_pipeline_latency_seconds` (origin_ts -> decision), `apex_slippage_bps` (adverse
only), `apex_orders_total` by state.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apextrader.bus import metrics
from apextrader.bus.errors import NotYet
from apextrader.contracts import (
    Envelope,
    MarketSnapshotEvent,
    OrderApproved,
    OrderApprovedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderFilled,
    OrderFilledEvent,
    OrderRejected,
    OrderRejectedEvent,
    OrderSubmitted,
    OrderSubmittedEvent,
    utcnow,
)
from apextrader.contracts.names import EventType
from apextrader.execution.guard import Credentials, LiveModeRefused, execution_mode
from apextrader.execution.orders import OrderState, OrderTracker
from apextrader.execution.paper import BookHistory, PaperEngine, adverse_bps, slippage_bps
from apextrader.runtime.agent import Agent, Handler
from apextrader.runtime.context import AgentContext

if TYPE_CHECKING:
    import ccxt.async_support as ccxt

    from apextrader.execution.live import LiveExecutor, LiveOutcome

#: Seconds between polls of open live orders.
POLL_S = 2.0
#: Order events read back at start.
HISTORY = 20_000

__all__ = ["ExecutionAgent", "LiveModeRefused"]


@dataclass
class Reported:
    """What the ORDERS stream already says about one order (rebuilt at start)."""

    filled: float = 0.0
    fills: int = 0
    done: bool = False


@dataclass
class OpenOrder:
    """A live order still working at the exchange."""

    event: OrderApprovedEvent
    exchange_order_id: str
    tracker: OrderTracker
    fills: int = 0


class ExecutionAgent(Agent):
    agent_id = "execution"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        # Raises LiveModeRefused: the process exits with the guard's message and never trades.
        self.mode = execution_mode(spec.mode, list(spec.exchanges), os.environ)
        self.paper = PaperEngine(spec.execution)
        self.books: dict[tuple[str, str], BookHistory] = {}
        self.open: dict[str, OpenOrder] = {}
        self.live: LiveExecutor | None = None
        self.labels = {"track": ctx.track}
        # Labelled metric children resolved once (a `labels()` lookup costs more than the fill math).
        self._latency = metrics.PIPELINE_LATENCY.labels(**self.labels)
        self._orders = {
            s: metrics.ORDERS.labels(state=s, **self.labels)
            for s in ("submitted", "filled", "partially_filled", "cancelled", "rejected")
        }
        self._slippage: dict[tuple[str, str], Any] = {}
        self.reported: dict[str, Reported] = {}
        #: Results per client order id: a redelivered order gets the same events, never a new fill.
        self.done: OrderedDict[str, list[Envelope]] = OrderedDict()
        if self.mode.mode == "live":
            from apextrader.execution.live import LiveExecutor  # ccxt (~100 MB) only for live trading

            secrets = [s for c in self.mode.credentials.values() for s in c.secrets()]
            exchanges = {ex: self.make_exchange(ex, c) for ex, c in self.mode.credentials.items()}
            self.live = LiveExecutor(exchanges, secrets, max_retries=spec.execution.max_retries)

    def make_exchange(self, exchange: str, creds: Credentials) -> ccxt.Exchange:
        """The ccxt client for one exchange (a subclass may supply its own HTTP session)."""
        from apextrader.execution.live import build_exchange

        return build_exchange(exchange, creds)

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"order.approved": self.on_order, "market.snapshot": self.on_snapshot}

    async def start(self) -> None:
        self.ctx.log.info("execution mode", extra={"mode": self.mode.mode, "why": self.mode.why})
        # What was already reported, so an order redelivered after a restart is never filled twice.
        track = self.ctx.track
        async for ev in self.ctx.history("order.filled", last=HISTORY, track=track):
            if isinstance(ev, OrderFilledEvent):
                rep = self.reported.setdefault(ev.data.client_order_id, Reported())
                rep.filled += ev.data.filled
                rep.fills += 1
                rep.done = rep.done or ev.data.status == "filled"
        terminal: tuple[EventType, ...] = ("order.rejected", "order.cancelled")
        for event_type in terminal:
            async for ev in self.ctx.history(event_type, last=HISTORY, track=track):
                if isinstance(ev, OrderRejectedEvent | OrderCancelledEvent):
                    self.reported.setdefault(ev.data.client_order_id, Reported()).done = True
        if self.live is not None:
            self.ctx.spawn(self._poll_open())

    async def stop(self) -> None:
        if self.live is None:
            return
        if self.ctx.spec.execution.cancel_on_stop:
            for coid in list(self.open):
                await self._cancel(coid, "agent stopping (execution.cancelOnStop)")
        await self.live.close()

    # --- market data ---------------------------------------------------------------------------
    async def on_snapshot(self, ev: Envelope) -> None:
        assert isinstance(ev, MarketSnapshotEvent)
        snap = ev.data
        if snap.depth is None or snap.quality != "ok" or snap.backfill:
            return
        key = (snap.exchange, snap.symbol)
        hist = self.books.get(key)
        if hist is None:
            hist = self.books[key] = BookHistory()
        hist.add(ev.timestamp, snap.depth)

    # --- orders --------------------------------------------------------------------------------
    async def on_order(self, ev: Envelope) -> Sequence[Envelope]:
        assert isinstance(ev, OrderApprovedEvent)
        coid = ev.data.client_order_id
        if coid in self.done:
            return self.done[coid]
        rep = self.reported.get(coid)
        if rep is not None and rep.done:
            self.done[coid] = []  # settled before a restart: its events are on the stream already
            return []
        latency = max(0.0, (utcnow() - ev.origin_ts).total_seconds())
        self._latency.observe(latency)
        out = await self._live(ev, rep) if self.live is not None else self._paper(ev, rep)
        self.done[coid] = out
        if len(self.done) > 100_000:
            self.done.popitem(last=False)
        return out

    def _derive_fill(
        self,
        ev: OrderApprovedEvent,
        filled: float,
        avg: float,
        fee: float,
        status: OrderState,
        n: int,
        exchange_order_id: str | None = None,
    ) -> OrderFilledEvent:
        o = ev.data
        slip = slippage_bps(o.side, avg, o.mid_at_decision)
        hist = self._slippage.get((o.exchange, o.symbol))
        if hist is None:
            hist = metrics.SLIPPAGE_BPS.labels(exchange=o.exchange, symbol=o.symbol, **self.labels)
            self._slippage[(o.exchange, o.symbol)] = hist
        hist.observe(adverse_bps(slip))
        self._orders[status.value].inc()
        data = OrderFilled(
            client_order_id=o.client_order_id,
            exchange_order_id=exchange_order_id,
            exchange=o.exchange,
            symbol=o.symbol,
            side=o.side,
            requested=o.amount,
            filled=filled,
            avg_price=avg,
            fee=fee,
            mid_at_decision=o.mid_at_decision,
            slippage_bps=slip,
            status="filled" if status is OrderState.FILLED else "partially_filled",
            paper=self.live is None,
            reduce_only=o.reduce_only,
            strategy=o.strategy,
        )
        return ev.derive(OrderFilledEvent, data, source_agent=self.agent_id, n=n)

    def _derive_reject(
        self, ev: OrderApprovedEvent, reason: str, message: str, retryable: bool = False
    ) -> Envelope:
        o = ev.data
        self._orders["rejected"].inc()
        data = OrderRejected.model_validate(
            {
                "client_order_id": o.client_order_id,
                "exchange": o.exchange,
                "symbol": o.symbol,
                "reason": reason,
                "message": message,
                "retryable": retryable,
            }
        )
        return ev.derive(OrderRejectedEvent, data, source_agent=self.agent_id)

    def _derive_cancel(self, ev: OrderApprovedEvent, reason: str, filled: float) -> Envelope:
        o = ev.data
        self._orders["cancelled"].inc()
        data = OrderCancelled(
            client_order_id=o.client_order_id,
            exchange=o.exchange,
            symbol=o.symbol,
            reason=reason,
            filled=filled,
        )
        return ev.derive(OrderCancelledEvent, data, source_agent=self.agent_id)

    def _paper(self, ev: OrderApprovedEvent, rep: Reported | None = None) -> list[Envelope]:
        o: OrderApproved = ev.data
        if rep is not None and rep.fills > 0:
            # Filled before a restart but the rest was never cancelled: finish the order only.
            return [self._derive_cancel(ev, "order book depth exhausted", rep.filled)]
        hist = self.books.get((o.exchange, o.symbol))
        arrival = ev.timestamp + self.paper.latency.delay(o.client_order_id)
        book = hist.at(arrival) if hist is not None else None
        if book is None:
            # The market feed is a separate consumer: right after a (re)start it may not have
            # delivered this book yet. Retry with back-off rather than refuse a sound order.
            raise NotYet(f"no order book for {o.symbol} on {o.exchange} yet")
        fill = self.paper.fill(o, book)
        if fill is None:
            limit = o.limit_price if o.order_type == "limit" else self.paper.protection(o)
            why = "nothing on the book" + (
                "" if limit is None else f" within {limit:.6g} (the price moved away)"
            )
            return [self._derive_reject(ev, "no_liquidity", why)]
        tracker = OrderTracker(o.client_order_id, o.amount)
        state = tracker.add_fill(fill.filled)
        out: list[Envelope] = [self._derive_fill(ev, fill.filled, fill.avg_price, fill.fee, state, 0)]
        if not fill.complete:
            tracker.advance(OrderState.CANCELLED)
            why = (
                "limit IOC remainder"
                if o.order_type == "limit"
                else "order book depth exhausted"
                if self.paper.protection(o) is None
                else "depth within the price protection exhausted"
            )
            out.append(self._derive_cancel(ev, why, tracker.filled))
        return out

    async def _live(self, ev: OrderApprovedEvent, rep: Reported | None = None) -> list[Envelope]:
        assert self.live is not None
        o = ev.data
        outcome = await self.live.submit(o)
        if outcome.state is OrderState.REJECTED:
            return [
                self._derive_reject(
                    ev, outcome.reason or "exchange_rejected", outcome.message, outcome.retryable
                )
            ]
        out: list[Envelope] = []
        tracker = OrderTracker.resume(o.client_order_id, o.amount, rep.filled if rep else 0.0)
        if outcome.exchange_order_id:
            self._orders["submitted"].inc()
            out.append(
                ev.derive(
                    OrderSubmittedEvent,
                    OrderSubmitted(
                        client_order_id=o.client_order_id,
                        exchange_order_id=outcome.exchange_order_id,
                        exchange=o.exchange,
                        symbol=o.symbol,
                        side=o.side,
                        amount=o.amount,
                    ),
                    source_agent=self.agent_id,
                )
            )
        first = rep.fills if rep else 0
        out += self._progress(ev, tracker, outcome, first)
        if not tracker.done and outcome.exchange_order_id:
            fills = first + sum(isinstance(e, OrderFilledEvent) for e in out)
            self.open[o.client_order_id] = OpenOrder(ev, outcome.exchange_order_id, tracker, fills=fills)
        return out

    def _progress(
        self, ev: OrderApprovedEvent, tracker: OrderTracker, outcome: LiveOutcome, n: int
    ) -> list[Envelope]:
        """Events for what changed since `tracker` was last updated (new fill amount, final state)."""
        out: list[Envelope] = []
        new = outcome.filled - tracker.filled
        if new > 0:
            state = tracker.add_fill(new)
            if outcome.state is OrderState.FILLED and state is not OrderState.FILLED:
                tracker.filled = tracker.requested
                state = OrderState.FILLED
                tracker.state = state
            avg = outcome.avg_price or ev.data.mid_at_decision
            fee = (
                outcome.fee if outcome.fee is not None else new * avg * self.paper.fee_rate(ev.data.exchange)
            )
            out.append(self._derive_fill(ev, new, avg, fee, state, n, outcome.exchange_order_id))
        if outcome.state is OrderState.CANCELLED and not tracker.done:
            tracker.advance(OrderState.CANCELLED)
            out.append(self._derive_cancel(ev, "cancelled at the exchange", tracker.filled))
        return out

    async def _poll_open(self) -> None:
        assert self.live is not None
        while True:
            await asyncio.sleep(POLL_S)
            for coid, op in list(self.open.items()):
                try:
                    outcome = await self.live.refresh(op.event.data, op.exchange_order_id)
                except Exception as exc:  # a poll is retried next round; never fatal
                    self.ctx.log.warning(
                        "poll failed", extra={"client_order_id": coid, "error": type(exc).__name__}
                    )
                    continue
                events = self._progress(op.event, op.tracker, outcome, op.fills)
                op.fills += sum(isinstance(e, OrderFilledEvent) for e in events)
                for e in events:
                    await self.ctx.publish(e)
                if op.tracker.done:
                    self.open.pop(coid, None)

    async def _cancel(self, coid: str, reason: str) -> None:
        assert self.live is not None
        op = self.open.pop(coid)
        try:
            outcome = await self.live.cancel(op.event.data, op.exchange_order_id)
        except Exception as exc:
            self.ctx.log.error("cancel failed", extra={"client_order_id": coid, "error": type(exc).__name__})
            return
        for e in self._progress(op.event, op.tracker, outcome, op.fills):
            await self.ctx.publish(e)
        self.ctx.log.info("cancelled open order", extra={"client_order_id": coid, "reason": reason})
