"""A pull consumer bound to one durable: fetch a batch, run each message through the middleware chain
in order (agents rely on per-consumer order), repeat until stopped.

A consumer that falls behind sheds intrabar data: within a fetched batch, a forming-bar snapshot
that a later one of the same market supersedes (`bus.coalesce`) is acked without being decoded or
handled, and counted (`apex_snapshots_shed_total`, `PullConsumer.shed`); while it sheds, it fetches
up to `coalesce.WINDOW` of its backlog at once, so that more snapshots of each market coalesce. An ack is an ack: the run
accounting (matched == acked + DLQ + pending) still balances.

Stopping (SIGTERM) stops fetching, finishes the message in hand, naks the rest of the batch for
immediate redelivery (to another replica or after restart) and leaves the durable in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import FetchTimeoutError, NotFoundError

from apextrader.bus.coalesce import COALESCE, WINDOW, superseded
from apextrader.bus.metrics import SNAPSHOTS_SHED, STREAM_GAP
from apextrader.bus.middleware import Delivery
from apextrader.bus.topology import ConsumerDecl

log = logging.getLogger(__name__)


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
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.bound = False
        self.handled = 0
        #: Messages discarded by the stream before this consumer got them (`decl.track_gaps`).
        self.gaps = 0
        #: Superseded forming-bar snapshots acked without handling (`bus.coalesce`).
        self.shed = 0
        self._shed_metric = SNAPSHOTS_SHED.labels(decl.agent)  # 0 from the start: increase() sees the first
        self._last_seq: int | None = None
        self._stopping = asyncio.Event()
        self._sub: JetStreamContext.PullSubscription | None = None

    async def bind(self) -> None:
        """Attach to the existing durable (created by the operator, `apex up` or `ensure_topology`)."""
        info = await self.js.consumer_info(self.decl.stream, self.decl.durable)
        if self.decl.track_gaps and self.decl.deliver_policy == "all" and info.delivered is not None:
            # what was delivered before a restart is the baseline; 0 for a new durable
            self._last_seq = info.delivered.stream_seq or 0
        self._sub = await self.js.pull_subscribe_bind(durable=self.decl.durable, stream=self.decl.stream)
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

    async def run(self) -> None:
        if self._sub is None:
            await self.bind()
        sub = self._sub
        assert sub is not None
        want = 1  # see below: how many to ask for is learnt from what is pending
        while not self._stopping.is_set():
            try:
                msgs = await sub.fetch(want, timeout=self.fetch_timeout)
            except (TimeoutError, NatsTimeoutError, FetchTimeoutError):
                continue
            except ConnectionClosedError:
                break
            except Exception as exc:  # disconnected / server restarting / durable deleted
                log.debug("fetch %s/%s: %r", self.decl.stream, self.decl.durable, exc)
                await asyncio.sleep(0.2)
                await self._check_durable()
                continue
            # Ask for what is known to be waiting (the last message's num_pending), one when nothing
            # is: when none is pending, nats-py's pull lingers until the *whole* batch has arrived (or
            # the timeout), so at a trickle one event would wait up to `fetch_timeout` for company; a
            # pull for one returns the moment it lands, and a pull for a known backlog at once.
            if msgs:
                want = max(1, min(self.batch, msgs[-1].metadata.num_pending))
            shed = superseded([(m.headers or {}).get(COALESCE) for m in msgs])
            if shed:  # behind on market data: a wider next fetch coalesces more of the backlog
                want = max(want, min(WINDOW, msgs[-1].metadata.num_pending))
            for i, msg in enumerate(msgs):
                if self._stopping.is_set():
                    for rest in msgs[i:]:
                        await rest.nak()
                    break
                if self.decl.track_gaps:
                    await self._note_sequence(msg)
                if i in shed:
                    await self._shed(msg)
                    continue
                await self.on_message(msg)
                self.handled += 1
        with contextlib.suppress(Exception):  # the connection may already be closing
            await sub.unsubscribe()
        self.bound = False
