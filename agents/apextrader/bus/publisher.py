"""Publishing events: subject from `bus.topology`, `Nats-Msg-Id` = event id (JetStream drops a
repeat inside the stream's duplicate window), `traceparent` and correlation headers, await the PubAck."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from nats.errors import ConnectionReconnectingError, NoRespondersError, OutboundBufferLimitError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer

from apextrader.bus import tracing
from apextrader.bus.coalesce import COALESCE
from apextrader.bus.errors import BusError
from apextrader.bus.pipelined import Outgoing, PubAckInbox, Round
from apextrader.bus.topology import subject
from apextrader.contracts import Envelope

MSG_ID: Final = "Nats-Msg-Id"
CORRELATION_ID: Final = "Apex-Correlation-Id"
EVENT_TYPE: Final = "Apex-Type"
_TRANSIENT = (
    NatsTimeoutError,
    asyncio.TimeoutError,
    NoRespondersError,
    ConnectionReconnectingError,
    OutboundBufferLimitError,
    ServiceUnavailableError,
    NoStreamResponseError,
)


def event_headers(event: Envelope) -> dict[str, str]:
    """Headers for `event` in the current trace context."""
    return headers_for(event.id, event.correlation_id, event.type)


def headers_for(event_id: str, correlation_id: str, event_type: str) -> dict[str, str]:
    """Headers for an event (also an already encoded one) in the current trace context."""
    headers = {MSG_ID: event_id, CORRELATION_ID: correlation_id, EVENT_TYPE: event_type}
    tracing.inject_current(headers, correlation_id)
    return headers


#: "duplicate message id is in process": on a replicated stream the first publish of this id is
#: still being agreed by the peers (our retry raced it); asking again returns its PubAck.
_DUPLICATE_IN_PROCESS: Final = 10158


def _in_process(exc: Exception) -> bool:
    return isinstance(exc, APIError) and exc.err_code == _DUPLICATE_IN_PROCESS


@dataclass(frozen=True)
class Sent:
    """An event sent by `Publisher.submit` whose PubAck `Publisher.confirm` awaits."""

    message: Outgoing
    headers: dict[str, str]
    round: Round


class Publisher:
    """Publishes events of one pipeline and waits for JetStream's acknowledgement.

    A publish that gets no PubAck (server restarting, leader election, reconnecting) is retried with
    the same `Nats-Msg-Id` until `give_up_s`, so a retry that did reach the stream is de-duplicated.
    """

    def __init__(
        self,
        js: JetStreamContext,
        tracer: Tracer = tracing.NOOP_TRACER,
        ack_timeout: float = 2.0,
        give_up_s: float = 60.0,
    ) -> None:
        self.js = js
        self.tracer = tracer
        self.ack_timeout = ack_timeout
        self.give_up_s = give_up_s
        self._inbox: PubAckInbox | None = None

    async def _send(self, subj: str, body: bytes, headers: dict[str, str]) -> PubAck:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.give_up_s
        pause = 0.05
        while True:
            try:
                return await self.js.publish(subj, body, timeout=self.ack_timeout, headers=headers)
            except (*_TRANSIENT, APIError) as exc:
                if not isinstance(exc, _TRANSIENT) and not _in_process(exc):
                    raise  # a real refusal (e.g. a full protected stream): the caller decides
                if loop.time() + pause > deadline:
                    raise BusError(f"no PubAck for {headers.get(MSG_ID)} on {subj}: {exc!r}") from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def publish(self, event: Envelope) -> PubAck:
        """Publish and await the PubAck; `ack.duplicate` is True when the id was already stored."""
        subj = subject(event.pipeline, event.type, event.track)
        body = event.to_json()
        if tracing.is_noop(self.tracer) or trace.get_current_span().get_span_context().is_valid:
            return await self._send(subj, body, event_headers(event))
        # A chain starts here: a producer span in the correlation id's trace.
        with self.tracer.start_as_current_span(
            f"publish {event.type}",
            context=tracing.correlation_context(event.correlation_id),
            kind=SpanKind.PRODUCER,
            attributes={"apex.event_id": event.id, "apex.correlation_id": event.correlation_id},
        ):
            return await self._send(subj, body, event_headers(event))

    async def submit(self, event: Envelope) -> Sent:
        """Send `event` now without waiting for its PubAck (`confirm` does): a consumer sends the
        outputs of the next message while the server stores these. Events sent one after another
        are stored in that order (one connection)."""
        m = Outgoing(subject(event.pipeline, event.type, event.track), event.to_json(), event.id,
                     event.correlation_id, event.type)  # fmt: skip
        headers = self._headers(m)
        return Sent(m, headers, await self._pipe().send(m, headers))

    async def confirm(self, sent: Sent) -> None:
        """Wait for the PubAck of a submitted event; without a good one, publish it again with the
        same `Nats-Msg-Id` through `publish`'s retry path (raises as `publish` does)."""
        rnd = await self._pipe().wait(sent.round, self.ack_timeout)
        if rnd.failed:
            await self._send(sent.message.subject, sent.message.body, sent.headers)

    def _pipe(self) -> PubAckInbox:
        if self._inbox is None:
            self._inbox = PubAckInbox(self.js._nc)  # JetStreamContext has no public accessor
        return self._inbox

    async def publish_many(self, messages: Sequence[Outgoing], window: int = 512) -> int:
        """Publish encoded events pipelined, up to `window` PubAcks outstanding, and return how
        many the stream already had (duplicates). Every PubAck is checked; a message without a
        good one is published again through `publish`'s retry path with the same `Nats-Msg-Id`
        (raises `BusError`/the server's error when that fails too)."""
        if not messages:
            return 0
        headers = [self._headers(m) for m in messages]
        rnd = await self._pipe().publish(messages, headers, window=window, ack_timeout=self.ack_timeout)
        duplicates = rnd.duplicates
        for i in sorted(rnd.failed):
            m = messages[i]
            ack = await self._send(m.subject, m.body, headers[i])
            duplicates += ack.duplicate is True
        return duplicates

    def _headers(self, m: Outgoing) -> dict[str, str]:
        headers = self._event_headers(m)
        if m.coalesce is not None:
            headers[COALESCE] = m.coalesce
        return headers

    def _event_headers(self, m: Outgoing) -> dict[str, str]:
        if tracing.is_noop(self.tracer) or trace.get_current_span().get_span_context().is_valid:
            return headers_for(m.event_id, m.correlation_id, m.event_type)
        # A chain starts here: a producer span in the correlation id's trace (as in `publish`).
        with self.tracer.start_as_current_span(
            f"publish {m.event_type}",
            context=tracing.correlation_context(m.correlation_id),
            kind=SpanKind.PRODUCER,
            attributes={"apex.event_id": m.event_id, "apex.correlation_id": m.correlation_id},
        ):
            return headers_for(m.event_id, m.correlation_id, m.event_type)
