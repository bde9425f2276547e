"""RiskManagerAgent: the final gate of a decision track.

Consumes `signal.validated` (own track), `market.alert` (all), `order.filled`/`order.rejected`/
`order.cancelled` (own track: positions and pending exposure) and `market.snapshot` (marks). Sizes
against the track's capital share read live from KV `canary.weight`, obeys KV `halt`, echoes what
it applied to `applied.risk-manager.<track>.<instance>`, and emits `order.approved` (its event id is
the client order id: derived from the signal event, so a redelivery yields the same id) or
`signal.rejected` naming the rule.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from apextrader.bus import metrics
from apextrader.bus.topology import KV_CANARY_STATE, KV_CANARY_WEIGHT, KV_HALT, kv_applied_key
from apextrader.canary.weights import WeightError, effective_weights, parse_weight, track_weight
from apextrader.contracts import (
    Envelope,
    MarketAlertEvent,
    MarketSnapshotEvent,
    OrderApprovedEvent,
    OrderCancelledEvent,
    OrderFilledEvent,
    OrderRejectedEvent,
    SignalRejected,
    SignalRejectedEvent,
    SignalValidatedEvent,
    derive_id,
    new_id,
)
from apextrader.contracts.names import EventType
from apextrader.contracts.units import timeframe_seconds
from apextrader.risk.alerts import ActiveAlerts
from apextrader.risk.gate import Approved, GateState, decide, flatten_orders
from apextrader.risk.limits import MARGIN_RULES, breaches, exposure
from apextrader.risk.portfolio import Portfolio
from apextrader.runtime.agent import Agent, Handler
from apextrader.runtime.context import AgentContext

#: Seconds after which a paper order the execution never reported stops counting as exposure. A
#: live spec never expires one: silence there can be an outcome the venue has not told yet (the
#: order may be working), so only a fill, a rejection or a cancellation releases it.
PENDING_TTL_S = 300.0
HISTORY_FILLS = 20_000
#: Decisions remembered per signal event id, so a redelivered signal gets the same answer.
DECISIONS_KEPT = 100_000


class RiskManagerAgent(Agent):
    agent_id = "risk-manager"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        self.limits = ctx.spec.risk
        self.book = Portfolio()
        self.alerts = ActiveAlerts()
        self.has_canary = ctx.pipeline.spec.canary is not None
        #: KV `canary.weight`, the effective canary weight; until KV answers, what the machine gives
        #: a fresh rollout of this spec (so a stepped canary starts at its reached weight, often 0).
        self.canary_weight = effective_weights(ctx.pipeline.spec.canary, None, datetime.now(UTC)).get(
            "canary", 0
        )
        self.halted = False
        self.killed = False
        #: KV `canary.state` is `aborted` (canary track only): the gate applies `abortPolicy`.
        self.aborted = False
        self.abort_policy = ctx.pipeline.spec.canary.abort_policy if ctx.pipeline.spec.canary else "drain"
        self._abort_round = 0
        self.in_violation = False
        self.labels = {"track": ctx.track}
        self._approved = metrics.ORDERS.labels(state="approved", **self.labels)
        self.decisions: OrderedDict[str, list[Envelope]] = OrderedDict()
        self._reported: set[str] = set()
        #: Visible book notional per (instrument, side taking it), from the latest snapshot.
        self.liquidity: dict[tuple[tuple[str, str], str], float] = {}
        #: Market time of each instrument's mark, (bar open, bar closed): marks never move back in it.
        self.mark_times: dict[tuple[str, str], tuple[datetime, bool]] = {}
        self.bar_seconds = float(timeframe_seconds(ctx.spec.timeframe))
        #: `agents.risk-manager.maxBookParticipation`: the share of the visible depth on the side an
        #: entry takes that it may use (bounds paper and live slippage).
        self.max_book_participation = ctx.spec.agent("risk-manager").max_book_participation

    # --- wiring --------------------------------------------------------------------------------
    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {
            "signal.validated": self.on_signal,
            "market.alert": self.on_alert,
            "order.filled": self.on_fill,
            "order.rejected": self.on_settled,
            "order.cancelled": self.on_settled,
            "market.snapshot": self.on_snapshot,
        }

    async def start(self) -> None:
        kv = self.ctx.kv
        self._take_weight(await kv.get_json(KV_CANARY_WEIGHT))
        self.halted = bool(await kv.get_json(KV_HALT, False))
        aborted_at_start = await kv.get_json(KV_CANARY_STATE) == "aborted"
        # Rebuild from the streams (idempotent by event id): approvals are the decisions already
        # taken (a redelivered signal gets the same one) and pending exposure until their fills,
        # rejections or cancellations, which are applied next.
        now = time.monotonic()
        async for ev in self.ctx.history("order.approved", last=HISTORY_FILLS, track=self.ctx.track):
            if isinstance(ev, OrderApprovedEvent) and ev.causation_id:
                self._remember(ev.causation_id, [ev])
                o = ev.data
                signed = o.amount if o.side == "buy" else -o.amount
                self.book.add_pending(o.client_order_id, (o.exchange, o.symbol), signed, o.reduce_only, now)
        async for ev in self.ctx.history("order.filled", last=HISTORY_FILLS, track=self.ctx.track):
            if isinstance(ev, OrderFilledEvent):
                self._apply_fill(ev)
        settled_types: tuple[EventType, ...] = ("order.rejected", "order.cancelled")
        for settled in settled_types:
            async for ev in self.ctx.history(settled, last=HISTORY_FILLS, track=self.ctx.track):
                if isinstance(ev, OrderRejectedEvent | OrderCancelledEvent):
                    self.book.settle(ev.data.client_order_id)
        async for ev in self.ctx.history("market.alert", last=2000):
            if isinstance(ev, MarketAlertEvent):
                self.alerts.apply(ev.data)
        await self._set_aborted(aborted_at_start)
        await self._echo()
        self.ctx.spawn(self._watch_weight())
        self.ctx.spawn(self._watch_halt())
        if self.ctx.track == "canary":
            self.ctx.spawn(self._watch_canary_state())

    # --- live settings -------------------------------------------------------------------------
    @property
    def track_weight(self) -> int:
        """This track's percent of capital (from the effective canary weight)."""
        return track_weight(self.ctx.track, self.canary_weight, self.has_canary)

    @property
    def track_capital(self) -> float:
        """This track's capital in the spec's currency: capital x track weight / 100."""
        return self.ctx.spec.capital.amount * self.track_weight / 100.0

    def state_word(self) -> str:
        return "killed" if self.killed else "halted" if self.halted else "active"

    async def _echo(self) -> None:
        """Write what this instance sizes with, for `apex canary status` and the operator."""
        metrics.CANARY_WEIGHT_APPLIED.labels(**self.labels).set(self.canary_weight)
        key = kv_applied_key(self.agent_id, self.ctx.track, self.ctx.instance)
        value: dict[str, Any] = {
            "weight": self.canary_weight,
            "track_weight": self.track_weight,
            "state": self.state_word(),
            "abort_policy": self.abort_policy if self.aborted else None,
            "open_positions": len(self.book.positions),
            "at": datetime.now(UTC).isoformat(),
        }
        await self.ctx.kv.put_json(key, value)

    async def _watch_weight(self) -> None:
        async for value in self.ctx.kv.watch(KV_CANARY_WEIGHT):
            if self._take_weight(value):
                self.ctx.log.info("canary weight applied", extra={"weight": self.canary_weight})
                await self._echo()

    def _take_weight(self, value: Any) -> bool:
        """Apply a KV `canary.weight` value; a value outside 0-100 is logged and ignored."""
        if value is None:
            return False
        try:
            weight = parse_weight(value)
        except WeightError as exc:
            self.ctx.log.error("ignored KV canary.weight", extra={"error": str(exc)})
            return False
        changed, self.canary_weight = weight != self.canary_weight, weight
        return changed

    async def _watch_halt(self) -> None:
        async for value in self.ctx.kv.watch(KV_HALT):
            halted = bool(value)
            if halted != self.halted:
                self.halted = halted
                self.ctx.log.warning("halt switch", extra={"halted": halted})
                await self._echo()

    async def _watch_canary_state(self) -> None:
        async for value in self.ctx.kv.watch(KV_CANARY_STATE):
            await self._set_aborted(value == "aborted")

    async def _set_aborted(self, aborted: bool) -> None:
        """Enter or leave the aborted state; with abortPolicy flatten, close every position now."""
        if self.ctx.track != "canary" or aborted == self.aborted:
            return
        self.aborted = aborted
        self.ctx.log.warning("canary abort", extra={"aborted": aborted, "abort_policy": self.abort_policy})
        if aborted and self.abort_policy == "flatten":
            await self._flatten()
        await self._echo()

    async def _flatten(self) -> None:
        """One reduce-only market order per open position, reason `abort_flatten`. Ids are fresh per
        abort; after a restart the rebuilt book counts these orders as pending exits, so nothing is
        closed twice."""
        self._abort_round += 1
        ids = {inst: new_id() for inst in self.book.positions}
        for order in flatten_orders(self.book, ids, self.track_weight):
            ev = OrderApprovedEvent.new(
                order,
                pipeline=self.ctx.pipeline.name,
                source_agent=self.agent_id,
                track=self.ctx.track,
                id=order.client_order_id,
            )
            signed = order.amount if order.side == "buy" else -order.amount
            self.book.add_pending(
                order.client_order_id, (order.exchange, order.symbol), signed, True, time.monotonic()
            )
            await self.ctx.publish(ev)
            self._approved.inc()
            self.ctx.log.warning(
                "abort flatten order", extra={"symbol": order.symbol, "amount": order.amount}
            )

    # --- handlers ------------------------------------------------------------------------------
    def _remember(self, signal_id: str, events: list[Envelope]) -> list[Envelope]:
        self.decisions[signal_id] = events
        if len(self.decisions) > DECISIONS_KEPT:
            self.decisions.popitem(last=False)
        return events

    async def on_signal(self, ev: Envelope) -> Sequence[Envelope]:
        assert isinstance(ev, SignalValidatedEvent)
        # A redelivered signal (crash between publish and ack, or restart) gets the decision it got
        # before: the same event ids, which JetStream de-duplicates, and no second reservation.
        if ev.id in self.decisions:
            return self.decisions[ev.id]
        return self._remember(ev.id, await self._decide(ev))

    async def _decide(self, ev: SignalValidatedEvent) -> list[Envelope]:
        sig = ev.data.signal
        # When the MARKET consumer trails the signals, the signal's close is the freshest price known.
        self._mark((sig.exchange, sig.symbol), sig.price, (sig.bar_time, True))
        if self.ctx.spec.mode != "live":
            self.book.expire(time.monotonic(), PENDING_TTL_S)
        coid = derive_id(ev.id, OrderApprovedEvent.event_type, self.ctx.track, 0)
        if not self.killed and self.book.drawdown(self.track_capital) >= self.limits.max_drawdown:
            self.killed = True
            self.ctx.log.error(
                "kill-switch: max drawdown reached",
                extra={"drawdown": self.book.drawdown(self.track_capital)},
            )
            await self._echo()
        state = GateState(
            self.track_capital,
            self.track_weight,
            halted=self.halted,
            killed=self.killed,
            liquidity=self.liquidity,
            max_book_participation=self.max_book_participation,
            bars_behind=self._bars_behind((sig.exchange, sig.symbol), sig.bar_time),
            aborted=self.abort_policy if self.aborted else None,
        )
        decision = decide(
            sig, coid, self.book, state, self.limits, self.alerts, self.ctx.spec.execution.order_type
        )
        if isinstance(decision, Approved):
            # The signal's bar dates the order: execution refuses it once the market has moved on.
            order = decision.order.model_copy(update={"bar_time": sig.bar_time})
            signed = order.amount if order.side == "buy" else -order.amount
            self.book.add_pending(
                coid, (order.exchange, order.symbol), signed, order.reduce_only, time.monotonic()
            )
            self._approved.inc()
            out = ev.derive(OrderApprovedEvent, order, source_agent=self.agent_id, track=self.ctx.track)
            assert out.id == coid
            return [out]
        rejected = SignalRejected(
            stage="risk-manager",
            rule=decision.rule,
            reason=decision.reason,
            strategy=sig.strategy,
            exchange=sig.exchange,
            symbol=sig.symbol,
            side=sig.side,
        )
        self.ctx.log.info("signal refused", extra={"rule": decision.rule, "reason": decision.reason})
        return [ev.derive(SignalRejectedEvent, rejected, source_agent=self.agent_id, track=self.ctx.track)]

    async def on_alert(self, ev: Envelope) -> None:
        assert isinstance(ev, MarketAlertEvent)
        self.alerts.apply(ev.data)

    def _apply_fill(self, ev: OrderFilledEvent) -> None:
        f = ev.data
        signed = f.filled if f.side == "buy" else -f.filled
        self.book.apply_fill(
            ev.id,
            f.client_order_id,
            (f.exchange, f.symbol),
            signed,
            f.avg_price,
            f.fee,
            done=f.status == "filled",
        )

    async def on_fill(self, ev: Envelope) -> None:
        assert isinstance(ev, OrderFilledEvent)
        self._apply_fill(ev)
        self._observe()
        if self.aborted:  # the echo says how many positions the aborted canary still holds
            await self._echo()

    async def on_settled(self, ev: Envelope) -> None:
        assert isinstance(ev, OrderRejectedEvent | OrderCancelledEvent)
        self.book.settle(ev.data.client_order_id)

    async def on_snapshot(self, ev: Envelope) -> None:
        assert isinstance(ev, MarketSnapshotEvent)
        snap = ev.data
        if snap.quality != "ok":
            return
        mid = snap.depth.mid if snap.depth is not None else None
        inst = (snap.exchange, snap.symbol)
        if snap.depth is not None and not snap.backfill:
            self.liquidity[(inst, "buy")] = sum(lv.price * lv.amount for lv in snap.depth.asks)
            self.liquidity[(inst, "sell")] = sum(lv.price * lv.amount for lv in snap.depth.bids)
        if inst in self.book.positions or not snap.backfill:
            self._mark(inst, mid or snap.bar.close, (snap.bar.open_time, snap.closed))
        if inst in self.book.positions:
            self._observe()

    def _bars_behind(self, inst: tuple[str, str], bar_time: datetime) -> float | None:
        """Whole bars the market has moved on since `bar_time`'s bar closed, by the latest mark: 0
        while the next bar forms; a closed mark's bar counts as ended."""
        seen = self.mark_times.get(inst)
        if seen is None:
            return None
        opened, closed = seen
        return max(0.0, (opened - bar_time).total_seconds() / self.bar_seconds - (0 if closed else 1))

    def _mark(self, inst: tuple[str, str], price: float, market_time: tuple[datetime, bool]) -> None:
        """Mark `inst` unless the mark already comes from later in the market (snapshots can trail
        signals): a closed bar is later than any snapshot of it while it was forming."""
        seen = self.mark_times.get(inst)
        if seen is None or market_time >= seen:
            self.mark_times[inst] = market_time
            self.book.mark(inst, price, market_time[0].date())

    # --- observation ---------------------------------------------------------------------------
    def _observe(self) -> None:
        """Update position/PnL gauges and count entering a margin violation (held positions only)."""
        held = exposure(self.book, self.track_capital, self.limits, include_pending=False)
        per_symbol: dict[str, float] = dict.fromkeys(self._reported, 0.0)  # closed ones drop to 0
        for (_, symbol), n in held.notional.items():
            per_symbol[symbol] = per_symbol.get(symbol, 0.0) + n
        for symbol, n in per_symbol.items():
            metrics.POSITION_NOTIONAL.labels(symbol=symbol, **self.labels).set(n)
        self._reported = {sym for sym, n in per_symbol.items() if n != 0.0}
        metrics.PNL.labels(symbol="total", **self.labels).set(self.book.pnl())
        violated = bool(MARGIN_RULES & set(breaches(held, self.limits)))
        if violated and not self.in_violation:
            metrics.MARGIN_VIOLATIONS.labels(**self.labels).inc()
            self.ctx.log.error("margin violation observed", extra={"equity": held.equity})
        self.in_violation = violated
        if self.book.drawdown(self.track_capital) >= self.limits.max_drawdown and not self.killed:
            self.killed = True
            self.ctx.log.error("kill-switch: max drawdown reached")
