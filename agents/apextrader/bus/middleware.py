"""The middleware chain every consumer runs, outermost first (one named step each, testable alone):

    MetricsStep → SettleStep → ValidateStep → TraceStep → IdempotencyStep → InvokeStep

- **metrics**: `apex_events_total{outcome}`, `apex_handler_seconds`, `apex_dlq_total`.
- **settle**: the only place that acks, naks or dead-letters. Success → ack. `Reject` (and failed
  validation) → DLQ at once, then ack. Any other exception → nak with the consumer's back-off, or,
  on the last allowed delivery (`max_deliver`), DLQ (`handler_error`) then ack. A DLQ write that is
  not acknowledged naks instead, so nothing is dropped: published == acked + in DLQ.
- **validate**: size limit, JSON, schema, known and handled type, correlation id (`bus.codec`).
- **trace**: continues the `traceparent` trace (or the correlation id's) with a consumer span and
  sets the correlation id for logs.
- **idempotency** (what it guarantees): an event id this consumer completed before is acked again
  without calling the handler (outcome `duplicate`): a redelivery whose ack was lost, or the same
  event published again after the stream's de-duplication window. Completed ids are remembered per
  process (LRU). Across a crash the guarantee comes from ordering instead: derived events are
  published (PubAck awaited) before the input is acked, and their ids are deterministic, so an input
  that was in flight when the process died is handled again but its outputs are de-duplicated by
  JetStream: every downstream consumer sees each derived event exactly once.
- **invoke**: calls the handler and publishes what it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from prometheus_client import Counter, Histogram

from apextrader.bus import metrics, tracing
from apextrader.bus.codec import DEFAULT_MAX_EVENT_BYTES, DecodeError, decode
from apextrader.bus.dlq import DeadLetter, send_to_dlq
from apextrader.bus.errors import NotYet, Reject
from apextrader.bus.hops import HopMarks, HopProfile, mark_decoded
from apextrader.bus.publisher import CORRELATION_ID, EVENT_TYPE, Publisher
from apextrader.contracts import Envelope, Handler
from apextrader.contracts.names import AgentId, EventType, Track

log = logging.getLogger("apextrader.bus")

#: The correlation id of the event being handled (the JSON log formatter reads it).
current_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "apex_correlation_id", default=None
)


@dataclass
class Delivery:
    """One delivered message as it moves through the chain."""

    msg: Msg
    data: bytes
    subject: str
    headers: dict[str, str]
    num_delivered: int
    stream_seq: int
    event: Envelope | None = None
    outcome: str | None = None
    dlq_reason: str | None = None
    outputs: Sequence[Envelope] = field(default_factory=tuple)
    #: Phase marks, only while a hop profile is recorded (`bus.hops`).
    marks: HopMarks | None = None
    #: Set when the consumer pipelines: once the handler ran and its outputs are sent, the next
    #: message may start while this one waits for its PubAcks (`Chain.begin`).
    released: asyncio.Event | None = None
    #: Settled with success while pipelined: the consumer acks it with the rest of its batch.
    ack_later: bool = False

    @classmethod
    def from_msg(cls, msg: Msg) -> Delivery:
        meta = msg.metadata
        return cls(
            msg=msg,
            data=msg.data,
            subject=msg.subject,
            headers=dict(msg.headers or {}),
            num_delivered=int(meta.num_delivered or 1),
            stream_seq=int(meta.sequence.stream) if meta.sequence else 0,
        )

    @property
    def type_label(self) -> str:
        return self.event.type if self.event is not None else "unknown"


Next = Callable[[Delivery], Awaitable[None]]
Middleware = Callable[[Delivery, Next], Awaitable[None]]


class CompletedIds:
    """The last `capacity` event ids this process completed (insertion-ordered LRU)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


@dataclass
class ChainConfig:
    """What one consumer's chain needs to know."""

    js: JetStreamContext
    pipeline: str
    agent: AgentId
    track: Track
    stream: str
    max_deliver: int
    backoff_s: Sequence[float]
    handlers: Mapping[EventType, Handler]
    publisher: Publisher
    tracer: Tracer = tracing.NOOP_TRACER
    completed: CompletedIds = field(default_factory=CompletedIds)
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    #: The consumer's ack wait: a handler running longer tells the server it is still working.
    ack_wait_s: float = 30.0
    #: Record where each message's time goes (`APEX_HOP_PROFILE`); None on the normal path.
    profile: HopProfile | None = None

    def backoff_for(self, num_delivered: int) -> float:
        if not self.backoff_s:
            return 0.0
        return float(self.backoff_s[min(num_delivered, len(self.backoff_s)) - 1])


def count_event(cfg: ChainConfig, cache: dict[tuple[str, str], Counter], etype: str, outcome: str) -> None:
    """`apex_events_total` +1; bound children are cached (labels() takes a lock each call)."""
    child = cache.get((etype, outcome))
    if child is None:
        child = cache[(etype, outcome)] = metrics.EVENTS.labels(cfg.agent, cfg.track, etype, outcome)
    child.inc()


class ProfileStep:
    """Outermost when a hop profile is recorded: marks the start and files the phases (`bus.hops`)."""

    def __init__(self, profile: HopProfile) -> None:
        self.profile = profile

    async def __call__(self, d: Delivery, nxt: Next) -> None:
        d.marks = HopMarks(start=time.perf_counter())
        await nxt(d)
        self.profile.record(d.type_label, d.marks, time.perf_counter())


class MetricsStep:
    """Outermost: counts the settled outcome and the DLQ reason (`apex_events_total`, `apex_dlq_total`)."""

    def __init__(self, cfg: ChainConfig) -> None:
        self.cfg = cfg
        self._counters: dict[tuple[str, str], Counter] = {}

    async def __call__(self, d: Delivery, nxt: Next) -> None:
        await nxt(d)
        count_event(self.cfg, self._counters, d.type_label, d.outcome or "acked")
        if d.dlq_reason is not None:
            metrics.DLQ.labels(self.cfg.agent, self.cfg.track, self.cfg.stream, d.dlq_reason).inc()


def _report(d: Delivery, level: int, what: str, exc: BaseException) -> None:
    extra = {
        "event_id": d.event.id if d.event else d.headers.get("Nats-Msg-Id"),
        "correlation_id": d.event.correlation_id if d.event else d.headers.get(CORRELATION_ID),
        "subject": d.subject,
        "delivery": d.num_delivered,
        "error": f"{type(exc).__name__}: {exc}",
    }
    log.log(level, what, extra=extra, exc_info=exc if level >= logging.ERROR else None)


class SettleStep:
    """The only step that acks, naks or dead-letters (see the module docstring)."""

    def __init__(self, cfg: ChainConfig) -> None:
        self.cfg = cfg

    async def __call__(self, d: Delivery, nxt: Next) -> None:
        try:
            await nxt(d)
        except DecodeError as exc:
            d.outcome = "invalid"
            _report(d, logging.WARNING, f"invalid event dead-lettered ({exc.reason})", exc)
            await self.dead_letter(d, exc.reason, exc.message)
        except Reject as exc:
            d.outcome = "dlq"
            _report(d, logging.WARNING, f"event rejected to the DLQ ({exc.reason})", exc)
            await self.dead_letter(d, exc.reason, exc.message)
        except Exception as exc:
            await self.failed(d, exc)
        else:
            if d.released is None:
                await d.msg.ack()
            else:  # pipelined: the consumer acks the batch back to back (one socket write)
                d.ack_later = True
            d.outcome = d.outcome or "acked"

    async def failed(self, d: Delivery, exc: Exception) -> None:
        """A handler error: retry with back-off, or dead-letter on the last allowed delivery."""
        if d.num_delivered >= self.cfg.max_deliver:
            d.outcome = "dlq"
            _report(d, logging.ERROR, "handler failed on the last delivery: dead-lettered", exc)
            await self.dead_letter(d, "handler_error", f"{type(exc).__name__}: {exc}")
        else:
            d.outcome = "retried"
            level = logging.INFO if isinstance(exc, NotYet) else logging.WARNING
            _report(d, level, "handler failed: retrying with back-off", exc)
            await d.msg.nak(delay=self.cfg.backoff_for(d.num_delivered))

    async def dead_letter(self, d: Delivery, reason: str, error: str) -> None:
        cfg = self.cfg
        letter = DeadLetter(
            pipeline=cfg.pipeline,
            agent=cfg.agent,
            track=cfg.track,
            reason=reason,
            error=error,
            subject=d.subject,
            stream=cfg.stream,
            stream_seq=d.stream_seq,
            deliveries=d.num_delivered,
            data=d.data,
            headers=d.headers,
        )
        try:
            await send_to_dlq(cfg.js, letter)
        except Exception:
            # The DLQ write was not acknowledged: keep the event on its stream (redelivered later).
            await d.msg.nak(delay=cfg.backoff_for(d.num_delivered) or 1.0)
            d.outcome = "retried"
            return
        await d.msg.ack()
        d.dlq_reason = reason


class ValidateStep:
    """Decodes the message into `d.event` (size, JSON, schema, handled type); DecodeError otherwise."""

    def __init__(self, cfg: ChainConfig) -> None:
        self.accepted = frozenset(cfg.handlers)
        self.max_bytes = cfg.max_event_bytes

    async def __call__(self, d: Delivery, nxt: Next) -> None:
        d.event = event = decode(
            d.data, accepted=self.accepted, max_bytes=self.max_bytes, type_hint=d.headers.get(EVENT_TYPE)
        )
        if d.marks is not None:
            mark_decoded(d.marks, event.timestamp.timestamp())
        await nxt(d)


class TraceStep:
    """Sets the correlation id for logs and continues the trace with a consumer span."""

    def __init__(self, cfg: ChainConfig) -> None:
        self.cfg = cfg
        self.tracing_on = not tracing.is_noop(cfg.tracer)

    async def __call__(self, d: Delivery, nxt: Next) -> None:
        event = d.event
        assert event is not None
        token = current_correlation_id.set(event.correlation_id)
        try:
            if self.tracing_on:
                await self._span(d, event, nxt)
            else:  # hot path: no spans, pass the incoming traceparent on
                tp_token = tracing.current_traceparent.set(d.headers.get(tracing.TRACEPARENT))
                try:
                    await nxt(d)
                finally:
                    tracing.current_traceparent.reset(tp_token)
        finally:
            current_correlation_id.reset(token)

    async def _span(self, d: Delivery, event: Envelope, nxt: Next) -> None:
        cfg = self.cfg
        parent = tracing.extract_context(d.headers, event.correlation_id)
        with cfg.tracer.start_as_current_span(
            f"handle {event.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            record_exception=False,
            set_status_on_exception=False,
            attributes={
                "apex.agent": cfg.agent,
                "apex.track": cfg.track,
                "apex.event_id": event.id,
                "apex.correlation_id": event.correlation_id,
                "apex.delivery": d.num_delivered,
            },
        ) as span:
            try:
                await nxt(d)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise


class IdempotencyStep:
    """An event id this consumer completed before is not handled again (outcome `duplicate`)."""

    def __init__(self, cfg: ChainConfig) -> None:
        self.completed = cfg.completed

    async def __call__(self, d: Delivery, nxt: Next) -> None:
        assert d.event is not None
        if d.event.id in self.completed:
            d.outcome = "duplicate"
            return
        await nxt(d)
        self.completed.add(d.event.id)


class InvokeStep:
    """The terminal step: calls the handler, publishes its outputs, times it (`apex_handler_seconds`).

    Pipelined (`Delivery.released`), the outputs are sent, the next message is released, and then
    their PubAcks are awaited: the input is still acknowledged only after its outputs are stored.
    """

    def __init__(self, cfg: ChainConfig) -> None:
        self.cfg = cfg
        self.keepalive = KeepAlive(cfg.ack_wait_s)
        self._timers: dict[str, Histogram] = {}

    async def __call__(self, d: Delivery) -> None:
        event = d.event
        assert event is not None
        started = time.perf_counter()
        self.keepalive.begin(d.msg, started)
        try:
            outputs = await self.cfg.handlers[event.type](event) or ()
            if d.marks is not None:
                d.marks.handled = time.perf_counter()
            await self._publish(d, outputs)
            d.outputs = outputs
            if d.marks is not None:
                d.marks.published = time.perf_counter()
        finally:
            self.keepalive.end(d.msg)
            timer = self._timers.get(event.type)
            if timer is None:
                labels = (self.cfg.agent, self.cfg.track, event.type)
                timer = self._timers[event.type] = metrics.HANDLER_SECONDS.labels(*labels)
            timer.observe(time.perf_counter() - started)

    async def _publish(self, d: Delivery, outputs: Sequence[Envelope]) -> None:
        publisher = self.cfg.publisher
        if d.released is None:
            for out in outputs:
                await publisher.publish(out)
            return
        sent = [await publisher.submit(out) for out in outputs]
        d.released.set()
        for one in sent:
            await publisher.confirm(one)


class Chain:
    """A consumer's message callback: runs one message through the middleware chain."""

    def __init__(self, run: Next) -> None:
        self._run = run

    async def __call__(self, msg: Msg) -> Delivery:
        """Run `msg` from start to settlement."""
        d = Delivery.from_msg(msg)
        await self._run(d)
        return d

    def begin(self, msg: Msg) -> tuple[asyncio.Task[Delivery], asyncio.Event]:
        """Start `msg`: the event is set once its handler ran and its outputs are sent (or it ended
        otherwise), so the next message may start; the task ends when it is settled."""
        d = Delivery.from_msg(msg)
        released = d.released = asyncio.Event()
        return asyncio.get_running_loop().create_task(self._settle(d, released)), released

    async def _settle(self, d: Delivery, released: asyncio.Event) -> Delivery:
        try:
            await self._run(d)
        finally:
            released.set()
        return d


def build_chain(cfg: ChainConfig) -> Chain:
    """The consumer's message callback: runs the chain and returns the settled delivery."""
    steps = (MetricsStep(cfg), SettleStep(cfg), ValidateStep(cfg), TraceStep(cfg), IdempotencyStep(cfg))
    # Bound methods: calling them is cheaper than calling the instances (hot path, every message).
    chain: Final[list[Middleware]] = [step.__call__ for step in steps]
    if cfg.profile is not None:
        chain.insert(0, ProfileStep(cfg.profile).__call__)
    return Chain(compose(chain, InvokeStep(cfg).__call__))


class KeepAlive:
    """Tells the server a slow handler is still working (`+WPI`), so its message is not redelivered
    meanwhile. One timer per chain rather than one per message, so fast handlers pay two dict
    writes; the timer re-arms only while a message is in the handler (a pipelining consumer may
    have a few) and stops when the chain goes idle (it never outlives the consumer)."""

    def __init__(self, ack_wait_s: float) -> None:
        self.interval = max(ack_wait_s / 3, 0.05)
        #: The messages in a handler (by identity: `Msg` is not hashable) and since when.
        self.busy: dict[int, tuple[Msg, float]] = {}
        self.armed = False
        self._tasks: set[asyncio.Task[None]] = set()

    def begin(self, msg: Msg, now: float) -> None:
        self.busy[id(msg)] = (msg, now)
        if not self.armed:
            self.armed = True
            asyncio.get_running_loop().call_later(self.interval, self._tick)

    def end(self, msg: Msg) -> None:
        self.busy.pop(id(msg), None)

    def _tick(self) -> None:
        if not self.busy:
            self.armed = False  # idle: the next begin() arms it again
            return
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        for msg, since in self.busy.values():
            if now - since >= self.interval:
                task = loop.create_task(msg.in_progress())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        loop.call_later(self.interval, self._tick)


def compose(chain: Sequence[Middleware], terminal: Next) -> Next:
    """Fold middleware around a terminal step: chain[0] is outermost."""
    step = terminal
    for mw in reversed(chain):
        step = _bind(mw, step)
    return step


def _bind(mw: Middleware, nxt: Next) -> Next:
    async def call(d: Delivery) -> None:
        await mw(d, nxt)

    return call
