"""Reading recent events of one type back from their stream (agents rebuild state after a restart)."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import FetchTimeoutError

from apextrader.bus.topology import EVENT_DOMAIN, stream_name
from apextrader.contracts import Envelope, decode_event
from apextrader.contracts.names import EventType, Track


async def history(
    js: JetStreamContext,
    pipeline: str,
    event_type: EventType,
    *,
    last: int,
    track: Track | None = None,
    batch: int = 500,
) -> AsyncIterator[Envelope]:
    """The last `last` valid events of `event_type` (any track unless given), oldest first.

    Reads through an ephemeral, ack-less consumer up to the stream's state at call time; events that
    do not decode are skipped (they were dead-lettered when first consumed).
    """
    stream = stream_name(pipeline, EVENT_DOMAIN[event_type])
    filter_subject = f"apex.{pipeline}.{event_type}.{track or '*'}"
    info = await js.stream_info(stream, subjects_filter=filter_subject)
    if last <= 0 or info.state.messages == 0:
        return
    end_seq = info.state.last_seq
    sub = await js.pull_subscribe(
        filter_subject,
        stream=stream,
        config=js_api.ConsumerConfig(
            ack_policy=js_api.AckPolicy.NONE,
            deliver_policy=js_api.DeliverPolicy.ALL,
            inactive_threshold=30.0,
            mem_storage=True,
        ),
    )
    kept: deque[bytes] = deque(maxlen=last)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=0.5)
            except (TimeoutError, FetchTimeoutError):
                break
            done = False
            for msg in msgs:
                kept.append(msg.data)
                meta = msg.metadata
                if meta.sequence.stream >= end_seq or meta.num_pending == 0:
                    done = True
            if done:
                break
    finally:
        await sub.unsubscribe()
    for raw in kept:
        try:
            yield decode_event(raw)
        except ValueError:
            continue
