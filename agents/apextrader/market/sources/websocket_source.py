"""The `ccxt` source over websockets (`source.transport: websocket`): ccxt.pro streams on the venues
that have them wired (`STREAMING`), REST polling on the others and for funding.

Per streamed exchange, one task per watcher (candles, book, trades, liquidations of each symbol)
repeats its watch call. A failed call (dropped connection, error frame, book out of sync) is
retried after exponential back-off with jitter, and ccxt.pro dials a fresh connection on that next
call. Every `1/hz` seconds the exchange's loop drains the feed into a batch and judges health as
the REST loop does: stream data since the last tick → up; only errors or candles that stopped → a
failure (down after `max_failures` in a row); nothing at all for `stale_after` → down. A stream
silent that long while its connections look open (a stuck feed) is torn down and resubscribed, at
most once per `stale_after`; when data flows again the exchange is up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

from apextrader.contracts.payloads import Exchange
from apextrader.market.sources.base import Batch
from apextrader.market.sources.ccxt_client import STREAMING, describe, make_exchange
from apextrader.market.sources.rest_feed import ExchangeFeed
from apextrader.market.sources.rest_source import CcxtSource, ClientFactory
from apextrader.market.sources.websocket_feed import TRADE_GRACE_S, StreamFeed, Watcher

log = logging.getLogger(__name__)
_pro_client: ClientFactory = functools.partial(make_exchange, streaming=True)


class CcxtStreamSource(CcxtSource):
    def __init__(
        self,
        *,
        stream_client_factory: ClientFactory = _pro_client,
        trade_grace_s: float = TRADE_GRACE_S,
        **kwargs: Any,
    ) -> None:
        self.stream_client_factory, self.trade_grace_s = stream_client_factory, trade_grace_s
        self._watching: dict[Exchange, list[asyncio.Task[None]]] = {}
        super().__init__(**kwargs)

    async def close(self) -> None:
        """Stop the watchers first: one retrying on a closed client would reopen its session."""
        for tasks in self._watching.values():
            await _cancel(tasks)
        await super().close()

    def _feed(
        self, exchange: Exchange, client_factory: ClientFactory, symbols: list[str], **settings: Any
    ) -> ExchangeFeed:
        if exchange not in STREAMING:
            return super()._feed(exchange, client_factory, symbols, **settings)
        client = self.stream_client_factory(exchange)
        return StreamFeed(exchange, client, symbols, trade_grace_s=self.trade_grace_s, **settings)

    async def _loop(self, exchange: Exchange, queue: asyncio.Queue[Batch]) -> None:
        feed = self.feeds[exchange]
        if not isinstance(feed, StreamFeed):
            return await super()._loop(exchange, queue)
        while not feed.opened:
            await self._reopen(exchange, queue)
        interval, down_after = 1.0 / self.hz, self.health.down_after
        tasks = self._subscribe(exchange, feed)
        last_data = resubscribed = time.monotonic()
        try:
            while True:
                started = time.monotonic()
                ok, batch = await self._guarded(exchange, "stream", feed.drain)
                if ok and batch:
                    await queue.put(batch)
                seen, error = feed.take_activity()
                if seen:
                    last_data = time.monotonic()
                if seen and not feed.stale_reason:
                    self.health.ok(exchange)
                elif feed.stale_reason or error:
                    self.health.failure(exchange, feed.stale_reason or error or "")
                self.health.check(exchange)
                now = time.monotonic()
                if now - last_data > down_after and now - resubscribed > down_after:
                    log.warning("stream silent, resubscribing", extra={"exchange": exchange})
                    tasks = await self._resubscribe(exchange, feed, tasks)
                    resubscribed = time.monotonic()
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        finally:
            await _cancel(tasks)

    def _subscribe(self, exchange: Exchange, feed: StreamFeed) -> list[asyncio.Task[None]]:
        self._watching[exchange] = [
            asyncio.create_task(self._watch(exchange, feed, name, watcher), name=f"{exchange} {name}")
            for name, watcher in feed.watchers().items()
        ]
        return self._watching[exchange]

    async def _resubscribe(
        self, exchange: Exchange, feed: StreamFeed, tasks: list[asyncio.Task[None]]
    ) -> list[asyncio.Task[None]]:
        await _cancel(tasks)
        with contextlib.suppress(Exception):
            await feed.client.close_ws_clients()
        return self._subscribe(exchange, feed)

    async def _watch(self, exchange: Exchange, feed: StreamFeed, name: str, watcher: Watcher) -> None:
        attempt, fresh = 0, True
        while True:
            try:
                await watcher(fresh)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being stopped
                error: BaseException = ConnectionError("stream closed")  # ccxt cancelled its future
            except Exception as exc:
                error = exc
            else:
                attempt, fresh = 0, False
                continue
            attempt, fresh = attempt + 1, True
            feed.last_error = f"{name}: {describe(error)}"
            delay = self.backoff.delay(attempt)
            log.warning(
                "stream failed",
                extra={"exchange": exchange, "stream": name, "reason": feed.last_error,
                       "retry_in_s": round(delay, 2)},
            )  # fmt: skip
            await asyncio.sleep(delay)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
