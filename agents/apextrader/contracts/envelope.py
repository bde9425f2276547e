"""The event envelope (docs/bus.md) and one concrete event class per event type.

Decoding is a single pydantic-core pass over the JSON bytes: the union of event classes is
discriminated by `type`, so the payload is validated against the right model directly.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from apextrader.contracts.ids import ID_PATTERN, derive_id, new_id
from apextrader.contracts.names import AgentId, EventType, Track
from apextrader.contracts.payloads import (
    FeaturesComputed,
    MarketAlert,
    MarketSnapshot,
    OrderApproved,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    SignalProposed,
    SignalRejected,
    SignalValidated,
)

SCHEMA_VERSION = 1
EventId = Annotated[str, Field(pattern=ID_PATTERN)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Fields every event carries. Use a concrete subclass (`MarketSnapshotEvent`, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[EventType]

    id: EventId
    type: EventType
    schema_version: int = SCHEMA_VERSION
    source_agent: AgentId
    correlation_id: EventId
    causation_id: EventId | None = None
    #: Wall-clock publish time (UTC).
    timestamp: datetime
    #: Wall-clock publish time of the originating snapshot; what the pipeline latency measures.
    origin_ts: datetime
    pipeline: str = Field(min_length=1, max_length=63)
    track: Track
    data: Payload

    @classmethod
    def new(
        cls,
        data: Any,
        *,
        pipeline: str,
        source_agent: AgentId,
        track: Track = "shared",
        correlation_id: str | None = None,
        id: str | None = None,
    ) -> Self:
        """Start a chain: a fresh id that is also the correlation id unless one is given."""
        event_id = id or new_id()
        now = utcnow()
        return cls(
            id=event_id,
            type=cls.event_type,
            source_agent=source_agent,
            correlation_id=correlation_id or event_id,
            timestamp=now,
            origin_ts=now,
            pipeline=pipeline,
            track=track,
            data=data,
        )

    def derive(
        self,
        cls: builtins.type[E],
        data: Any,
        *,
        source_agent: AgentId,
        track: Track | None = None,
        n: int = 0,
    ) -> E:
        """An event caused by this one: same correlation id and origin time, causation id = self.id,
        and a deterministic id so a redelivered handler publishes the same id again."""
        out_track: Track = track or self.track
        return cls(
            id=derive_id(self.id, cls.event_type, out_track, n),
            type=cls.event_type,
            source_agent=source_agent,
            correlation_id=self.correlation_id,
            causation_id=self.id,
            timestamp=utcnow(),
            origin_ts=self.origin_ts,
            pipeline=self.pipeline,
            track=out_track,
            data=data,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


E = TypeVar("E", bound=Envelope)


class MarketSnapshotEvent(Envelope):
    event_type: ClassVar[EventType] = "market.snapshot"
    type: Literal["market.snapshot"]
    data: MarketSnapshot


class MarketAlertEvent(Envelope):
    event_type: ClassVar[EventType] = "market.alert"
    type: Literal["market.alert"]
    data: MarketAlert


class FeaturesComputedEvent(Envelope):
    event_type: ClassVar[EventType] = "features.computed"
    type: Literal["features.computed"]
    data: FeaturesComputed


class SignalProposedEvent(Envelope):
    event_type: ClassVar[EventType] = "signal.proposed"
    type: Literal["signal.proposed"]
    data: SignalProposed


class SignalValidatedEvent(Envelope):
    event_type: ClassVar[EventType] = "signal.validated"
    type: Literal["signal.validated"]
    data: SignalValidated


class SignalRejectedEvent(Envelope):
    event_type: ClassVar[EventType] = "signal.rejected"
    type: Literal["signal.rejected"]
    data: SignalRejected


class OrderApprovedEvent(Envelope):
    event_type: ClassVar[EventType] = "order.approved"
    type: Literal["order.approved"]
    data: OrderApproved


class OrderSubmittedEvent(Envelope):
    event_type: ClassVar[EventType] = "order.submitted"
    type: Literal["order.submitted"]
    data: OrderSubmitted


class OrderFilledEvent(Envelope):
    event_type: ClassVar[EventType] = "order.filled"
    type: Literal["order.filled"]
    data: OrderFilled


class OrderCancelledEvent(Envelope):
    event_type: ClassVar[EventType] = "order.cancelled"
    type: Literal["order.cancelled"]
    data: OrderCancelled


class OrderRejectedEvent(Envelope):
    event_type: ClassVar[EventType] = "order.rejected"
    type: Literal["order.rejected"]
    data: OrderRejected


AnyEvent = Annotated[
    MarketSnapshotEvent
    | MarketAlertEvent
    | FeaturesComputedEvent
    | SignalProposedEvent
    | SignalValidatedEvent
    | SignalRejectedEvent
    | OrderApprovedEvent
    | OrderSubmittedEvent
    | OrderFilledEvent
    | OrderCancelledEvent
    | OrderRejectedEvent,
    Field(discriminator="type"),
]

EVENT_CLASSES: dict[EventType, type[Envelope]] = {
    cls.event_type: cls
    for cls in (
        MarketSnapshotEvent,
        MarketAlertEvent,
        FeaturesComputedEvent,
        SignalProposedEvent,
        SignalValidatedEvent,
        SignalRejectedEvent,
        OrderApprovedEvent,
        OrderSubmittedEvent,
        OrderFilledEvent,
        OrderCancelledEvent,
        OrderRejectedEvent,
    )
}

_EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def decode_event(raw: bytes | str) -> Envelope:
    """Parse and validate one event (raises `pydantic.ValidationError`)."""
    return _EVENT_ADAPTER.validate_json(raw)


def encode_event(event: Envelope) -> bytes:
    return event.to_json()


#: An agent's handler for one event type: the derived events to publish (or None).
Handler = Callable[[Envelope], Awaitable[Sequence[Envelope] | None]]
