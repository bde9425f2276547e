"""A pull consumer bound to one durable: messages are pulled continuously and run through the
middleware chain one at a time, in order (agents rely on per-consumer order), until stopped.

**Pulling.** One pull request for up to `batch` messages stays open at the server (with an expiry
and idle heartbeats); when fewer than half of them are still to come, another request tops it up.
A message that lands is delivered at once into this consumer's queue, so a hop costs one server
delivery, not a request round trip per message, and a burst arrives in one go (the same scheme as
the Go client's `Consume`). The server's status messages steer it: `100` heartbeat (the pull is
alive), `408` a request expired (its undelivered count comes back), `409` the request ended
(leadership change, consumer deleted or changed: start over). No heartbeat for three intervals
means the requests were lost with the server (restart, failover): pull again.

**Overload.** A consumer that falls behind sheds intrabar data: among the messages delivered and
not yet handled, a forming-bar snapshot that a later one of the same market supersedes
(`bus.coalesce`) is acked without being decoded or handled, and counted (`apex_snapshots_shed_total`,
`PullConsumer.shed`); while it sheds it asks for up to `coalesce.WINDOW` messages ahead, so that
more snapshots of each market coalesce. An ack is an ack: the run accounting (matched == acked +
DLQ + pending) still balances. Closed bars, signals and orders are never shed.

**Stopping** (SIGTERM) stops pulling, finishes the message in hand, naks every prefetched one for
immediate redelivery (to another replica or after restart) and leaves the durable in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from apextrader.bus.coalesce import COALESCE, WINDOW, superseded
from apextrader.bus.metrics import SNAPSHOTS_SHED, STREAM_GAP
from apextrader.bus.middleware import Chain, Delivery
from apextrader.bus.topology import ConsumerDecl

log = logging.getLogger(__name__)


STATUS: Final = "Status"
PENDING_MESSAGES: Final = "Nats-Pending-Messages"
#: A pull request lives this many heartbeat intervals, then the server sends 408 and we pull again.
EXPIRES_IN_HEARTBEATS: Final = 20
#: Heartbeats missed before the open requests count as lost.
MISSED_HEARTBEATS: Final = 3


class PullConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        decl: ConsumerDecl,
        on_message: Callable[[Msg], Awaitable[Delivery]],
        *,
        batch: int = 64,
        fetch_timeout: float = 0.5,
    ) -> None:
        self.js = js
        self.decl = decl
        self.on_message = on_message
        #: Messages requested ahead (bounded by the durable's max_ack_pending).
        self.batch = max(1, min(batch, decl.max_ack_pending))
        #: The idle heartbeat interval asked of the server (s).
        self.heartbeat = fetch_timeout
        self.bound = False
        self.handled = 0
        #: Messages discarded by the stream before this consumer got them (`decl.track_gaps`).
        self.gaps = 0
        #: Superseded forming-bar snapshots acked without handling (`bus.coalesce`).
        self.shed = 0
        self._shed_metric = SNAPSHOTS_SHED.labels(decl.agent)  # 0 from the start: increase() sees the first
        #: How many messages the open requests ask for: `batch`, or `WINDOW` while shedding.
        self._ahead = self.batch
        self._last_seq: int | None = None
        self._stopping = asyncio.Event()
        self._sub: Subscription | None = None
        #: Messages asked for by the open pull requests and not delivered yet.
        self._credit = 0
        #: The server ended the requests (409, 503): pause before pulling again.
        self._refused = False
        #: The wait for the next delivery, which `stop` ends at once.
        self._waiting: asyncio.Timeout | None = None

    @property
    def _nc(self) -> NatsClient:
        return self.js._nc  # JetStreamContext has no public accessor

    async def bind(self) -> None:
        """Attach to the existing durable (created by the operator, `apex up` or `ensure_topology`)."""
        info = await self.js.consumer_info(self.decl.stream, self.decl.durable)
        if self.decl.track_gaps and self.decl.deliver_policy == "all" and info.delivered is not None:
            # what was delivered before a restart is the baseline; 0 for a new durable
            self._last_seq = info.delivered.stream_seq or 0
        if self._sub is None:
            # No callback: the client queues deliveries and `_next` takes them straight from that
            # queue (no task hop per message). nats-py subscribes it again after a reconnect.
            self._sub = await self._nc.subscribe(self._nc.new_inbox())
        self.bound = True

    async def _check_durable(self) -> None:
        """Not ready while the durable is missing (e.g. being recreated); ready again once it is back
        (pull requests address the durable by name, so the subscription needs no rebind)."""
        try:
            await self.js.consumer_info(self.decl.stream, self.decl.durable, timeout=1.0)
        except NotFoundError:
            self.bound = False
        except Exception:  # not connected: readiness reports the connection itself
            return
        else:
            self.bound = True

    async def _note_sequence(self, msg: Msg) -> None:
        """Count messages the stream discarded before this consumer got them. On a whole-stream
        filter consecutive deliveries have consecutive stream sequences; a jump is a gap only for
        the sequences now below the stream's first one (the others are deliveries lost in flight
        during a reconnect, which come back as redeliveries)."""
        seq = msg.metadata.sequence.stream
        last = self._last_seq
        if last is not None and seq > last + 1:
            try:
                first = (await self.js.stream_info(self.decl.stream)).state.first_seq
            except Exception:  # unknown now; the next jump will look again
                first = last + 1
            missed = max(0, min(seq, first) - last - 1)
            if missed:
                self.gaps += missed
                STREAM_GAP.labels(self.decl.agent, self.decl.stream).inc(missed)
                log.warning(
                    "%s/%s: %d messages discarded before delivery",
                    self.decl.stream,
                    self.decl.durable,
                    missed,
                )
        if last is None or seq > last:
            self._last_seq = seq

    async def _shed(self, msg: Msg) -> None:
        """A later snapshot of the same market is in hand: this one is done with, unhandled."""
        await msg.ack()
        self.shed += 1
        self._shed_metric.inc()

    def stop(self) -> None:
        self._stopping.set()
        if self._waiting is not None:  # idle: stop now rather than at the next heartbeat check
            with contextlib.suppress(RuntimeError):  # the wait is ending anyway
                self._waiting.reschedule(asyncio.get_running_loop().time())

    async def _pull(self) -> None:
        """Top the open requests up to `_ahead` messages (`batch`, or `coalesce.WINDOW` while
        shedding) when fewer than half are still to come."""
        if self._credit > self._ahead // 2:
            return
        assert self._sub is not None
        want = self._ahead - self._credit
        hb_ns = int(self.heartbeat * 1e9)
        request = {"batch": want, "expires": hb_ns * EXPIRES_IN_HEARTBEATS, "idle_heartbeat": hb_ns}
        subject = f"{self.js._prefix}.CONSUMER.MSG.NEXT.{self.decl.stream}.{self.decl.durable}"
        await self._nc.publish(subject, orjson.dumps(request), reply=self._sub.subject)
        self._credit += want

    def _on_status(self, msg: Msg, status: str) -> None:
        """Account for a status message of the server (see the module docstring)."""
        if status == "100":
            return  # idle heartbeat: the requests are alive
        headers = msg.headers or {}
        if status == "408" and PENDING_MESSAGES in headers:
            self._credit = max(0, self._credit - int(headers[PENDING_MESSAGES]))
            return
        # 409 (leadership change, consumer deleted, max waiting...) or a 408 without counts: the
        # open requests are gone; pull afresh.
        log.debug("pull %s/%s: status %s %s", self.decl.stream, self.decl.durable, status,
                  headers.get("Description", ""))  # fmt: skip
        self._credit = 0
        self._refused = True

    async def _next(self) -> list[Msg]:
        """Everything delivered so far (at least one message), or [] when the wait timed out."""
        assert self._sub is not None
        queue = self._sub._pending_queue  # nats-py's own pull code reads it the same way
        try:
            if queue.empty():
                async with asyncio.timeout(self.heartbeat * MISSED_HEARTBEATS) as self._waiting:
                    first = await queue.get()
            else:
                first = queue.get_nowait()
        except TimeoutError:
            return []
        finally:
            self._waiting = None
        msgs = [first]
        while not queue.empty():
            msgs.append(queue.get_nowait())
        for msg in msgs:  # the bookkeeping `next_msg` would do (slow-consumer limit, drain)
            self._sub._pending_size -= len(msg.data)
            queue.task_done()
        return msgs

    async def run(self) -> None:
        if self._sub is None:
            await self.bind()
        try:
            await self._loop()
        finally:
            # Also when cancelled: the open pull requests die with the subscription (the server
            # drops requests nobody listens to), instead of taking messages into a queue nobody
            # reads until their ack wait runs out.
            await self._close()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            if self._refused:
                self._refused = False
                await asyncio.sleep(0.1)
                await self._check_durable()
            try:
                await self._pull()
            except ConnectionClosedError:
                break
            except Exception as exc:  # disconnected / server restarting
                log.debug("pull %s/%s: %r", self.decl.stream, self.decl.durable, exc)
                await asyncio.sleep(0.2)
                continue
            msgs = await self._next()
            if self._stopping.is_set() and not msgs:
                break
            if not msgs:  # no message and no heartbeat: the requests were lost; pull again
                self._credit = 0
                await self._check_durable()
                continue
            await self._handle(msgs)

    async def _handle(self, msgs: list[Msg]) -> None:
        """Run `msgs` in order. Several at once are pipelined: the next message starts once this
        one's handler ran and its outputs are sent, and each is acked after its own PubAcks."""
        chain = self.on_message if isinstance(self.on_message, Chain) and len(msgs) > 1 else None
        shed = superseded([None if _status(m) else (m.headers or {}).get(COALESCE) for m in msgs])
        # Behind on market data: ask further ahead so that more of the backlog coalesces.
        self._ahead = max(self.batch, min(WINDOW, self.decl.max_ack_pending // 2)) if shed else self.batch
        settling: list[asyncio.Task[Delivery]] = []
        try:
            for i, msg in enumerate(msgs):
                status = _status(msg)
                if status is not None:
                    self._on_status(msg, status)
                    continue
                self._credit = max(0, self._credit - 1)
                if self._stopping.is_set():
                    for rest in msgs[i:]:
                        if _status(rest) is None:
                            await rest.nak()
                    return
                if self.decl.track_gaps:
                    await self._note_sequence(msg)
                if i in shed:
                    await self._shed(msg)
                    continue
                if chain is None:
                    await self.on_message(msg)
                else:
                    task, released = chain.begin(msg)
                    settling.append(task)
                    await released.wait()
                self.handled += 1
        finally:
            if settling:
                settled = await asyncio.gather(*settling)
                # Acks issued back to back leave in one write (every output was stored first).
                for d in settled:
                    if d.ack_later:
                        await d.msg.ack()

    async def _close(self) -> None:
        """Nak what was prefetched and not handled, then drop the subscription."""
        with contextlib.suppress(Exception):  # the connection may already be closing
            queue = self._sub._pending_queue if self._sub is not None else None
            while queue is not None and not queue.empty():
                msg = queue.get_nowait()
                if msg.reply and _status(msg) is None:
                    await msg.nak()
            if self._sub is not None:
                await self._sub.unsubscribe()
        self._sub = None
        self.bound = False


def _status(msg: Msg) -> str | None:
    """The status code of a server status message (no body, a `Status` header); None for events."""
    return msg.headers.get(STATUS) if msg.headers and not msg.data else None
