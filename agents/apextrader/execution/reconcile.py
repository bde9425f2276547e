"""What the execution agent knows at start: the ORDERS stream's record, reconciled with the venue.

- `order.filled` / `order.rejected` / `order.cancelled` say what is settled (never filled twice);
- `order.submitted` without a settlement is an order that was working when the agent stopped (a
  crash with an open limit order): it is tracked again and polled until it settles;
- the venue's open orders are compared with that: one of ours the stream never reported as
  submitted (the agent stopped between the venue's accept and the publish) is adopted, and its
  `order.submitted` published now; orders this track did not place are only counted in a log line;
- an approval neither settled, reported as submitted nor open at the venue may have reached it while
  the venue could not vouch for it (the agent stopped, or the event went to the DLQ, with its outcome
  unknown): it is looked up like an unknown outcome in the running agent, until the venue answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from apextrader.contracts import (
    Envelope,
    OrderApprovedEvent,
    OrderCancelledEvent,
    OrderFilledEvent,
    OrderRejectedEvent,
    OrderSubmittedEvent,
)
from apextrader.contracts.names import EventType
from apextrader.execution.events import OrderEvents
from apextrader.runtime.context import AgentContext
from apextrader.venues import ExecutionVenue

#: Order events read back at start.
HISTORY = 20_000

log = logging.getLogger(__name__)


@dataclass
class Reported:
    """What the ORDERS stream already says about one order."""

    filled: float = 0.0
    fills: int = 0
    done: bool = False


@dataclass
class Rebuilt:
    reported: dict[str, Reported] = field(default_factory=dict)
    #: client order id -> (its approval, exchange order id): working at the venue, to be polled.
    open: dict[str, tuple[OrderApprovedEvent, str]] = field(default_factory=dict)
    #: Events to publish now (`order.submitted` of adopted orders).
    publish: list[Envelope] = field(default_factory=list)
    #: client order id -> its approval: submit outcome never learnt, to be looked up.
    unknown: dict[str, OrderApprovedEvent] = field(default_factory=dict)


async def _reported(ctx: AgentContext) -> dict[str, Reported]:
    out: dict[str, Reported] = {}
    async for ev in ctx.history("order.filled", last=HISTORY, track=ctx.track):
        if isinstance(ev, OrderFilledEvent):
            rep = out.setdefault(ev.data.client_order_id, Reported())
            rep.filled += ev.data.filled
            rep.fills += 1
            rep.done = rep.done or ev.data.status == "filled"
    terminal: tuple[EventType, ...] = ("order.rejected", "order.cancelled")
    for event_type in terminal:
        async for ev in ctx.history(event_type, last=HISTORY, track=ctx.track):
            if isinstance(ev, OrderRejectedEvent | OrderCancelledEvent):
                out.setdefault(ev.data.client_order_id, Reported()).done = True
    return out


async def rebuild(
    ctx: AgentContext, venue: ExecutionVenue, events: OrderEvents, instruments: list[tuple[str, str]]
) -> Rebuilt:
    state = Rebuilt(reported=await _reported(ctx))
    if not venue.live:
        return state  # nothing rests at the paper venue
    submitted: dict[str, str] = {}
    async for ev in ctx.history("order.submitted", last=HISTORY, track=ctx.track):
        if isinstance(ev, OrderSubmittedEvent):
            submitted[ev.data.client_order_id] = ev.data.exchange_order_id
    approved: dict[str, OrderApprovedEvent] = {}
    async for ev in ctx.history("order.approved", last=HISTORY, track=ctx.track):
        if isinstance(ev, OrderApprovedEvent):
            approved[ev.data.client_order_id] = ev
    unsettled = {c for c in approved if not (c in state.reported and state.reported[c].done)}
    for coid in unsettled & submitted.keys():
        state.open[coid] = (approved[coid], submitted[coid])
    foreign = 0
    try:
        listed = await venue.open_orders(instruments)
    except Exception as exc:  # the stream's record still rebuilds what was working
        ctx.log.warning("venue open orders unavailable at start", extra={"error": type(exc).__name__})
        listed = []
    for at_venue in listed:
        coid = at_venue.client_order_id
        if coid in state.open:
            continue
        if coid in unsettled:
            ev = approved[coid]
            state.open[coid] = (ev, at_venue.exchange_order_id)
            state.publish.append(events.submitted(ev, at_venue.exchange_order_id))
        else:
            foreign += 1
    state.unknown = {coid: approved[coid] for coid in sorted(unsettled - state.open.keys())}
    ctx.log.info(
        "orders reconciled with the venue",
        extra={
            "working": len(state.open),
            "adopted": len(state.publish),
            "to_look_up": len(state.unknown),
            "not_ours": foreign,
        },
    )
    return state
