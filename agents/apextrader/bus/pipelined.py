"""Pipelined JetStream publishing: many messages out, their PubAcks collected as they come back.

`js.publish` is a request per message (a future, a timer and a reply parsed through the generic
request machinery); at a few thousand messages a second that Python overhead, not the server, is
the limit. Here every message carries a reply subject under one inbox subscription, `token ->
slot` is a dict entry, and an ack is one `orjson.loads`. What is kept: each message has its
`Nats-Msg-Id`, every PubAck is checked, and a message without a good PubAck (an error reply, no
responders, none within the timeout, a send refused while reconnecting) is handed back to the
caller, who publishes it again with the same id, so JetStream de-duplicates it if it did land.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionReconnectingError, OutboundBufferLimitError

STATUS: Final = "Status"
#: Sending refused for now: the message counts as not acknowledged (the caller retries it).
_SEND_REFUSED = (ConnectionReconnectingError, OutboundBufferLimitError)


class Outgoing(NamedTuple):
    """One encoded event to publish (headers are built by the publisher)."""

    subject: str
    body: bytes
    event_id: str
    correlation_id: str
    event_type: str
    #: The `Apex-Coalesce` key of a message a later one of the same market may supersede (a
    #: forming-bar snapshot, `bus.coalesce`); None for everything that must be handled.
    coalesce: str | None = None


@dataclass
class Round:
    """The acks of one `PubAckInbox.publish` call."""

    #: Sending pauses at `window` outstanding acks and resumes at half of it: waking up for every
    #: single ack would cost a wait per message and write to the socket one message at a time.
    window: int = 512
    outstanding: int = 0
    duplicates: int = 0
    #: Indexes of messages without a good PubAck, with the reason (for the retry's error message).
    failed: dict[int, str] = field(default_factory=dict)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PubAckInbox:
    """Publishes with reply subjects `<inbox>.<token>` and matches the PubAcks to the messages."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None
        self._tokens = itertools.count()
        self._pending: dict[str, tuple[Round, int]] = {}

    async def _ensure_subscribed(self) -> None:
        if self._sub is None:  # nats-py re-subscribes it by itself after a reconnect
            self._prefix = self.nc.new_inbox() + "."
            self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if entry is None:
            return  # late: already given up on (and retried by the caller)
        rnd, i = entry
        status = msg.headers.get(STATUS) if msg.headers else None
        if status is not None:  # 503: no stream listens on the subject (yet)
            rnd.failed[i] = f"status {status}"
        else:
            try:
                reply = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                reply = {"error": {"description": f"unreadable PubAck {msg.data[:80]!r}"}}
            if "error" in reply:
                rnd.failed[i] = str(reply["error"].get("description", reply["error"]))
            elif reply.get("duplicate"):
                rnd.duplicates += 1
        self._settled(rnd)

    @staticmethod
    def _settled(rnd: Round, n: int = 1) -> None:
        rnd.outstanding -= n
        if rnd.outstanding <= rnd.window // 2:
            rnd.room.set()
        if rnd.outstanding == 0:
            rnd.done.set()

    def _give_up(self, rnd: Round, reason: str) -> None:
        """Every message of `rnd` still waiting counts as failed; a late ack is ignored."""
        for token, (owner, i) in list(self._pending.items()):
            if owner is rnd:
                del self._pending[token]
                rnd.failed[i] = reason
                self._settled(rnd)

    async def send(self, m: Outgoing, headers: dict[str, str]) -> Round:
        """Send one message now; its PubAck settles the returned round (`wait`)."""
        await self._ensure_subscribed()
        rnd = Round(window=1)
        await self._send_one(rnd, 0, m, headers)
        return rnd

    async def _send_one(self, rnd: Round, i: int, m: Outgoing, headers: dict[str, str]) -> None:
        """Send message `i` of `rnd` with its reply token; a send refused counts as failed."""
        token = str(next(self._tokens))
        self._pending[token] = (rnd, i)
        rnd.outstanding += 1
        try:
            await self.nc.publish(m.subject, m.body, reply=self._prefix + token, headers=headers)
        except _SEND_REFUSED as exc:
            if self._pending.pop(token, None) is not None:
                rnd.failed[i] = repr(exc)
                self._settled(rnd)

    async def wait(self, rnd: Round, ack_timeout: float) -> Round:
        """`rnd` once its PubAcks are in, or with the missing ones in `failed` after `ack_timeout`."""
        if rnd.outstanding:
            rnd.done.clear()  # it may have been set while a window drained to zero earlier
            try:
                await asyncio.wait_for(rnd.done.wait(), ack_timeout)
            except TimeoutError:
                self._give_up(rnd, f"no PubAck within {ack_timeout}s")
        return rnd

    async def publish(
        self,
        messages: Sequence[Outgoing],
        headers: Sequence[dict[str, str]],
        *,
        window: int,
        ack_timeout: float,
    ) -> Round:
        """Send every message with at most `window` PubAcks outstanding, then wait for the rest.
        Never raises for a missing or bad ack: those are in the returned `Round.failed`."""
        await self._ensure_subscribed()
        rnd = Round(window=window)
        for i, (m, hdrs) in enumerate(zip(messages, headers, strict=True)):
            while rnd.outstanding >= window:
                rnd.room.clear()
                try:
                    await asyncio.wait_for(rnd.room.wait(), ack_timeout)
                except TimeoutError:
                    self._give_up(rnd, f"no PubAck within {ack_timeout}s")
            await self._send_one(rnd, i, m, hdrs)
        return await self.wait(rnd, ack_timeout)
