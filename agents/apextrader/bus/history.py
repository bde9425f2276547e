"""Reading recent events of one type back from their stream (agents rebuild state after a restart).

Needs only what an agent's NATS user may do: stream info, and an ephemeral ack-less consumer with a
filter (no info calls on that consumer).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import FetchTimeoutError

from apextrader.bus.topology import EVENT_DOMAIN, stream_name
from apextrader.contracts import Envelope, decode_event
from apextrader.contracts.names import EventType, Track


async def read_range(
    js: JetStreamContext,
    stream: str,
    filter_subject: str,
    start_seq: int,
    end_seq: int,
    *,
    expected: int | None = None,
    batch: int = 500,
) -> AsyncIterator[Msg]:
    """The messages matching `filter_subject` with stream sequence in [start_seq, end_seq], oldest
    first, through an ephemeral ack-less consumer.

    With `expected` (the number of matches known to be in the range) slow fetches are retried until
    they all arrived; without it, a quiet fetch means the range holds no (more) matches.
    """
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
    seen = idle = 0
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except (TimeoutError, FetchTimeoutError):
                idle += 1
                if expected is None or idle >= 5:
                    return
                continue  # a busy host was slow: the matches are there, ask again
            idle = 0
            for msg in msgs:
                meta = msg.metadata
                if meta.sequence.stream > end_seq:
                    return
                yield msg
                seen += 1
                at_end = meta.sequence.stream == end_seq or meta.num_pending == 0
                if at_end or (expected is not None and seen >= expected):
                    return
    finally:
        await sub.unsubscribe()


async def _read_tail(
    js: JetStreamContext,
    stream: str,
    filter_subject: str,
    start_seq: int,
    end_seq: int,
    last: int,
    *,
    expected: int | None,
    batch: int,
) -> deque[bytes]:
    """The bodies of the last `last` matches in [start_seq, end_seq]."""
    kept: deque[bytes] = deque(maxlen=last)
    async for msg in read_range(
        js, stream, filter_subject, start_seq, end_seq, expected=expected, batch=batch
    ):
        kept.append(msg.data)
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
    info = await js.stream_info(stream, subjects_filter=filter_subject)
    state = info.state
    matching = sum((state.subjects or {}).values())
    if last <= 0 or matching == 0:
        return
    first_seq, end_seq = state.first_seq, state.last_seq
    if matching <= last:  # everything that matches: one pass from the start
        kept = await _read_tail(
            js, stream, filter_subject, first_seq, end_seq, last, expected=matching, batch=batch
        )
    else:
        window = max(4 * last, 1000)
        while True:
            start = max(first_seq, end_seq - window + 1)
            whole = start == first_seq
            kept = await _read_tail(
                js,
                stream,
                filter_subject,
                start,
                end_seq,
                last,
                expected=matching if whole else None,
                batch=batch,
            )
            if len(kept) >= last or whole:
                break
            window *= 4
    for raw in kept:
        try:
            yield decode_event(raw)
        except ValueError:
            continue
