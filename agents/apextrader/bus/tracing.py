"""OpenTelemetry for the bus: W3C `traceparent` in message headers, spans per handled event, OTLP
export when an endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or an explicit one).

A chain's trace id is its correlation id (both are 128-bit hex): an event published without an active
span gets a remote parent whose trace id is the correlation id, so there is one trace per correlation
id even when the first publisher has tracing switched off.
"""

from __future__ import annotations

import contextvars
import os
import random
from collections.abc import Mapping, MutableMapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
#: The no-op tracer used while no provider is configured (propagation still works).
NOOP_TRACER: Tracer = trace.NoOpTracer()
#: With tracing off, the `traceparent` of the event being handled, passed on to what it derives
#: (no span objects are made on that path: it is the bus's hot path).
current_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "apex_traceparent", default=None
)


def is_noop(tracer: Tracer) -> bool:
    return isinstance(tracer, trace.NoOpTracer)


def setup_tracing(service_name: str, endpoint: str | None = None) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/HTTP, or None when no endpoint is configured.

    `endpoint` is the collector base URL (`http://host:4318`); `/v1/traces` is appended.
    """
    base = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not base:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=base.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    return provider


def tracer_from(provider: TracerProvider | None) -> Tracer:
    return provider.get_tracer("apextrader.bus") if provider is not None else NOOP_TRACER


def correlation_context(correlation_id: str) -> Context:
    """A context whose (remote, sampled) parent span has trace id = the correlation id."""
    parent = SpanContext(
        trace_id=int(correlation_id, 16) or 1,
        span_id=random.getrandbits(64) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def extract_context(headers: Mapping[str, str], correlation_id: str) -> Context:
    """The parent context carried by `traceparent`, else one derived from the correlation id."""
    if TRACEPARENT in headers:
        ctx = _PROPAGATOR.extract(headers)
        if trace.get_current_span(ctx).get_span_context().is_valid:
            return ctx
    return correlation_context(correlation_id)


def inject_current(headers: MutableMapping[str, str], correlation_id: str) -> None:
    """Write `traceparent`: the active span's; else the handled event's (tracing off); else a new
    span id in the correlation id's trace."""
    if trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(headers)
        return
    inherited = current_traceparent.get()
    if inherited is not None:
        headers[TRACEPARENT] = inherited
    else:
        headers[TRACEPARENT] = f"00-{correlation_id}-{random.getrandbits(64) or 1:016x}-01"


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The 32-hex trace id in a `traceparent` header, if any."""
    value = headers.get(TRACEPARENT, "")
    parts = value.split("-")
    return parts[1] if len(parts) == 4 else None
