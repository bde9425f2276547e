"""Dead-lettering what the chain never saw fail: when JetStream gives up on a message after
`max_deliver` deliveries without an ack (the consumer crashed or hung on it each time), it emits a
MAX_DELIVERIES advisory; this listener copies that message into the DLQ with reason `max_deliver`.

Every replica of an agent listens; the DLQ entry's `Nats-Msg-Id` (`dlq.<stream>.<seq>`) makes their
writes one entry, and only the write that was not a duplicate is counted.
"""

from __future__ import annotations

import logging

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError

from apextrader.bus import metrics
from apextrader.bus.dlq import DeadLetter, send_to_dlq
from apextrader.bus.publisher import EVENT_TYPE
from apextrader.bus.topology import ConsumerDecl

log = logging.getLogger(__name__)


def max_deliveries_subject(stream: str, durable: str) -> str:
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}"


async def watch_max_deliveries(nc: NatsClient, pipeline: str, decl: ConsumerDecl) -> Subscription:
    """Subscribe to the consumer's MAX_DELIVERIES advisories and dead-letter each message."""
    js = nc.jetstream()

    async def on_advisory(msg: Msg) -> None:
        try:
            advisory = orjson.loads(msg.data)
            seq = int(advisory["stream_seq"])
            deliveries = int(advisory.get("deliveries", decl.max_deliver))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable max-deliveries advisory: %r", msg.data[:200])
            return
        try:
            stored = await js.get_msg(decl.stream, seq)
            data, headers, subj = stored.data or b"", dict(stored.headers or {}), stored.subject or ""
            error = (
                f"no ack after {deliveries} deliveries ({decl.ack_wait_s:g}s ack wait each): "
                "the consumer crashed or hung on it"
            )
        except NotFoundError:
            data, headers, subj = b"", {}, ""
            error = f"gave up after {deliveries} deliveries; the message is no longer in {decl.stream}"
        letter = DeadLetter(
            pipeline=pipeline,
            agent=decl.agent,
            track=decl.track,
            reason="max_deliver",
            error=error,
            subject=subj,
            stream=decl.stream,
            stream_seq=seq,
            deliveries=deliveries,
            data=data,
            headers=headers,
        )
        try:
            ack = await send_to_dlq(js, letter)
        except Exception as exc:
            log.error("could not dead-letter %s/%s seq %d: %r", decl.stream, decl.durable, seq, exc)
            return
        if not ack.duplicate:
            metrics.DLQ.labels(decl.agent, decl.track, decl.stream, "max_deliver").inc()
            etype = headers.get(EVENT_TYPE, "unknown")
            metrics.EVENTS.labels(decl.agent, decl.track, etype, "dlq").inc()

    return await nc.subscribe(max_deliveries_subject(decl.stream, decl.durable), cb=on_advisory)
