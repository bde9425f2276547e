"""Each step of the consumer chain alone (bus/middleware.py), on a real nats-server: what it does to a
delivery, and what it lets through to the next step."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from apextrader.bus import dlq
from apextrader.bus.codec import DecodeError
from apextrader.bus.errors import Reject
from apextrader.bus.metrics import REGISTRY
from apextrader.bus.middleware import (
    ChainConfig,
    Delivery,
    IdempotencyStep,
    InvokeStep,
    KeepAlive,
    MetricsStep,
    SettleStep,
    TraceStep,
    ValidateStep,
    current_correlation_id,
)
from apextrader.bus.publisher import event_headers
from apextrader.bus.topology import Topology, stream_name, subject
from apextrader.contracts import Envelope
from tests.bus.helpers import chain_config, consumer_decl, snapshot


def _cfg(nc: NatsClient, topology: Topology, handled: list[Envelope] | None = None) -> ChainConfig:
    async def handle(ev: Envelope) -> list[Envelope]:
        if handled is not None:
            handled.append(ev)
        return []

    decl = consumer_decl(topology, "feature-engineer")
    return chain_config(nc.jetstream(), topology, decl, {"market.snapshot": handle})


def _delivery(nc: NatsClient, ev: Envelope | None = None, data: bytes | None = None) -> Delivery:
    ev = ev or snapshot(1)
    raw = data if data is not None else ev.to_json()
    msg = Msg(nc, subject=subject(ev.pipeline, ev.type, ev.track), data=raw, headers=event_headers(ev))
    return Delivery(
        msg=msg, data=raw, subject=msg.subject, headers=dict(msg.headers or {}), num_delivered=1, stream_seq=1
    )


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Delivery] = []

    async def __call__(self, d: Delivery) -> None:
        self.seen.append(d)


async def test_validate_sets_the_event_or_raises_before_the_next_step(nc: NatsClient, bus: Topology) -> None:
    step, nxt = ValidateStep(_cfg(nc, bus)), Recorder()
    good = _delivery(nc)
    await step(good, nxt)
    assert nxt.seen == [good] and good.event is not None and good.event.type == "market.snapshot"
    with pytest.raises(DecodeError):
        await step(_delivery(nc, data=b"{not json"), nxt)
    assert len(nxt.seen) == 1


async def test_idempotency_skips_a_completed_id(nc: NatsClient, bus: Topology) -> None:
    step, nxt = IdempotencyStep(_cfg(nc, bus)), Recorder()
    ev = snapshot(2)
    first, again = _delivery(nc, ev), _delivery(nc, ev)
    first.event = again.event = ev
    await step(first, nxt)
    await step(again, nxt)
    assert nxt.seen == [first] and again.outcome == "duplicate"


async def test_trace_sets_the_correlation_id_only_while_the_next_step_runs(
    nc: NatsClient, bus: Topology
) -> None:
    step = TraceStep(_cfg(nc, bus))
    d = _delivery(nc)
    d.event = snapshot(3)
    seen: list[str | None] = []

    async def nxt(_: Delivery) -> None:
        seen.append(current_correlation_id.get())

    await step(d, nxt)
    assert seen == [d.event.correlation_id] and current_correlation_id.get() is None


async def test_metrics_counts_the_settled_outcome_and_dlq_reason(nc: NatsClient, bus: Topology) -> None:
    cfg = _cfg(nc, bus)
    step = MetricsStep(cfg)
    labels = {"agent": cfg.agent, "track": cfg.track, "type": "market.snapshot", "outcome": "dlq"}
    before = REGISTRY.get_sample_value("apex_events_total", labels) or 0.0

    async def nxt(d: Delivery) -> None:
        d.event, d.outcome, d.dlq_reason = snapshot(4), "dlq", "handler_error"

    await step(_delivery(nc), nxt)
    assert REGISTRY.get_sample_value("apex_events_total", labels) == before + 1
    dlq_labels = {"agent": cfg.agent, "track": cfg.track, "stream": cfg.stream, "reason": "handler_error"}
    assert (REGISTRY.get_sample_value("apex_dlq_total", dlq_labels) or 0) >= 1


async def test_invoke_calls_the_handler_and_publishes_what_it_returns(nc: NatsClient, bus: Topology) -> None:
    out = snapshot(99)

    async def handle(ev: Envelope) -> list[Envelope]:
        return [out]

    decl = consumer_decl(bus, "feature-engineer")
    cfg = chain_config(nc.jetstream(), bus, decl, {"market.snapshot": handle})
    d = _delivery(nc)
    d.event = snapshot(5)
    await InvokeStep(cfg)(d)
    assert list(d.outputs) == [out]
    info = await nc.jetstream().stream_info(stream_name(out.pipeline, "MARKET"))
    assert info.state.messages == 1


async def test_settle_dead_letters_a_rejected_event_then_acks(nc: NatsClient, bus: Topology) -> None:
    js = nc.jetstream()
    ev = snapshot(6)
    await js.publish(subject(ev.pipeline, ev.type, ev.track), ev.to_json(), headers=event_headers(ev))
    decl = consumer_decl(bus, "feature-engineer")
    sub = await js.pull_subscribe_bind(decl.durable, stream=decl.stream)
    [msg] = await sub.fetch(1, timeout=5)
    d = Delivery.from_msg(msg)

    async def nxt(_: Delivery) -> None:
        raise Reject("bad_price", "the handler refused it")

    await SettleStep(_cfg(nc, bus))(d, nxt)
    assert d.outcome == "dlq" and d.dlq_reason == "bad_price"
    letters = [e async for e in dlq.iter_entries(js, stream_name(ev.pipeline, "DLQ"))]
    assert len(letters) == 1 and letters[0].reason == "bad_price"


async def test_keepalive_stops_when_the_chain_goes_idle() -> None:
    beat = KeepAlive(ack_wait_s=0.15)  # interval 0.05 s
    msg = Msg(None, subject="x")  # type: ignore[arg-type]
    beat.begin(msg, time.perf_counter())
    beat.end(msg)
    await asyncio.sleep(beat.interval * 3)
    assert not beat.armed  # the old timer rescheduled itself forever
    beat.begin(msg, time.perf_counter())
    assert beat.armed
    beat.end(msg)
