"""Publishing events: subject from `bus.topology`, `Nats-Msg-Id` = event id (JetStream drops a
repeat inside the stream's duplicate window), `traceparent` and correlation headers, await the PubAck."""

from __future__ import annotations

from typing import Final

from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer

from apextrader.bus import tracing
from apextrader.bus.topology import subject
from apextrader.contracts import Envelope

MSG_ID: Final = "Nats-Msg-Id"
CORRELATION_ID: Final = "Apex-Correlation-Id"
EVENT_TYPE: Final = "Apex-Type"


def event_headers(event: Envelope) -> dict[str, str]:
    """Headers for `event` in the current trace context."""
    headers = {MSG_ID: event.id, CORRELATION_ID: event.correlation_id, EVENT_TYPE: event.type}
    tracing.inject_current(headers, event.correlation_id)
    return headers


class Publisher:
    """Publishes events of one pipeline and waits for JetStream's acknowledgement."""

    def __init__(self, js: JetStreamContext, tracer: Tracer = tracing.NOOP_TRACER, timeout: float = 5.0):
        self.js = js
        self.tracer = tracer
        self.timeout = timeout

    async def publish(self, event: Envelope) -> PubAck:
        """Publish and await the PubAck; `ack.duplicate` is True when the id was already stored."""
        subj = subject(event.pipeline, event.type, event.track)
        body = event.to_json()
        if trace.get_current_span().get_span_context().is_valid:
            return await self.js.publish(subj, body, timeout=self.timeout, headers=event_headers(event))
        # A chain starts here: a producer span in the correlation id's trace.
        with self.tracer.start_as_current_span(
            f"publish {event.type}",
            context=tracing.correlation_context(event.correlation_id),
            kind=SpanKind.PRODUCER,
            attributes={"apex.event_id": event.id, "apex.correlation_id": event.correlation_id},
        ):
            return await self.js.publish(subj, body, timeout=self.timeout, headers=event_headers(event))
