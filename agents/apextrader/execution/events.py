"""The order events the execution agent publishes, derived from `order.approved` (deterministic
ids: a redelivered order publishes the same ids again), with their metrics."""

from __future__ import annotations

from typing import Any

from apextrader.bus import metrics
from apextrader.contracts import (
    Envelope,
    OrderApprovedEvent,
    OrderCancelled,
    OrderCancelledEvent,
    OrderFilled,
    OrderFilledEvent,
    OrderRejected,
    OrderRejectedEvent,
    OrderSubmitted,
    OrderSubmittedEvent,
)
from apextrader.contracts.names import AgentId, Track
from apextrader.venues import OrderState, OrderTracker, Outcome
from apextrader.venues.paper import adverse_bps, slippage_bps

AGENT: AgentId = "execution"


class OrderEvents:
    def __init__(self, track: Track, paper: bool) -> None:
        self.labels = {"track": track}
        self.paper = paper
        # Labelled metric children resolved once (a `labels()` lookup costs more than the fill math).
        self._orders = {
            s: metrics.ORDERS.labels(state=s, **self.labels)
            for s in ("submitted", "filled", "partially_filled", "cancelled", "rejected")
        }
        self._slippage: dict[tuple[str, str], Any] = {}

    def fill(
        self, ev: OrderApprovedEvent, filled: float, avg: float, fee: float, status: OrderState, n: int,
        outcome: Outcome,
    ) -> OrderFilledEvent:  # fmt: skip
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
            exchange_order_id=outcome.exchange_order_id,
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
            paper=self.paper,
            reduce_only=o.reduce_only,
            strategy=o.strategy,
            fill_model=outcome.fill_model,
        )
        return ev.derive(OrderFilledEvent, data, source_agent=AGENT, n=n)

    def reject(self, ev: OrderApprovedEvent, reason: str, message: str, retryable: bool = False) -> Envelope:
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
        return ev.derive(OrderRejectedEvent, data, source_agent=AGENT)

    def cancel(self, ev: OrderApprovedEvent, reason: str, filled: float) -> Envelope:
        o = ev.data
        self._orders["cancelled"].inc()
        data = OrderCancelled(
            client_order_id=o.client_order_id,
            exchange=o.exchange,
            symbol=o.symbol,
            reason=reason,
            filled=filled,
        )
        return ev.derive(OrderCancelledEvent, data, source_agent=AGENT)

    def submitted(self, ev: OrderApprovedEvent, exchange_order_id: str) -> Envelope:
        o = ev.data
        self._orders["submitted"].inc()
        data = OrderSubmitted(
            client_order_id=o.client_order_id,
            exchange_order_id=exchange_order_id,
            exchange=o.exchange,
            symbol=o.symbol,
            side=o.side,
            amount=o.amount,
        )
        return ev.derive(OrderSubmittedEvent, data, source_agent=AGENT)

    def progress(
        self, ev: OrderApprovedEvent, tracker: OrderTracker, outcome: Outcome, n: int, fee_rate: float
    ) -> list[Envelope]:
        """Events for what changed since `tracker` was last updated (new fill amount, final state)."""
        out: list[Envelope] = []
        new = outcome.filled - tracker.filled
        if new > tracker.requested * 1e-12:
            state = tracker.add_fill(new)
            if outcome.state is OrderState.FILLED and state is not OrderState.FILLED:
                tracker.filled = tracker.requested
                state = tracker.state = OrderState.FILLED
            avg = outcome.avg_price or ev.data.mid_at_decision
            fee = outcome.fee if outcome.fee is not None else new * avg * fee_rate
            out.append(self.fill(ev, new, avg, fee, state, n, outcome))
        if outcome.state is OrderState.CANCELLED and not tracker.done:
            tracker.advance(OrderState.CANCELLED)
            out.append(self.cancel(ev, outcome.message or "cancelled at the exchange", tracker.filled))
        return out
