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


async def _read_tail(
    js: JetStreamContext,
    stream: str,
    filter_subject: str,
    start_seq: int,
    end_seq: int,
    last: int,
    batch: int,
) -> deque[bytes]:
    """The last `last` matching message bodies with stream sequence in [start_seq, end_seq]."""
    sub = await js.pull_subscribe(
        filter_subject,
        stream=stream,
        config=js_api.ConsumerConfig(
            ack_policy=js_api.AckPolicy.NONE,
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_seq,
            inactive_threshold=30.0,
            mem_storage=True,
        ),
    )
    kept: deque[bytes] = deque(maxlen=last)
    try:
        done = False
        while not done:
            try:
                msgs = await sub.fetch(batch, timeout=0.5)
            except (TimeoutError, FetchTimeoutError):
                break
            for msg in msgs:
                meta = msg.metadata
                if meta.sequence.stream > end_seq:
                    done = True
                    break
                kept.append(msg.data)
                if meta.sequence.stream == end_seq or meta.num_pending == 0:
                    done = True
    finally:
        await sub.unsubscribe()
    return kept


async def history(
    js: JetStreamContext,
    pipeline: str,
    event_type: EventType,
    *,
    last: int,
    track: Track | None = None,
    batch: int = 500,
) -> AsyncIterator[Envelope]:
    """The last `last` valid events of `event_type` (any track unless given), oldest first, as the
    stream holds them when called. Reads backwards in growing windows, so the cost follows `last`,
    not the stream's length. Events that do not decode are skipped (they were dead-lettered)."""
    stream = stream_name(pipeline, EVENT_DOMAIN[event_type])
    filter_subject = f"apex.{pipeline}.{event_type}.{track or '*'}"
    info = await js.stream_info(stream)
    state = info.state
    if last <= 0 or state.messages == 0:
        return
    first_seq, end_seq = state.first_seq, state.last_seq
    window = max(4 * last, 1000)
    while True:
        start = max(first_seq, end_seq - window + 1)
        kept = await _read_tail(js, stream, filter_subject, start, end_seq, last, batch)
        if len(kept) >= last or start == first_seq:
            break
        window *= 4
    for raw in kept:
        try:
            yield decode_event(raw)
        except ValueError:
            continue
