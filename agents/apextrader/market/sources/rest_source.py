"""The `ccxt` source over REST (`source.transport: rest`): Binance, Bybit and OKX public data, one polling loop per exchange.

Each exchange runs independently (a slow or failing venue never delays the others): it polls at
`hz`, and on an error it backs off exponentially (transient errors: rate limits, timeouts,
maintenance, connection trouble) while `SourceHealth` turns it down after repeated failures or
`stale_after` seconds without usable data, and up again when data returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async

from apextrader.contracts.payloads import Exchange
from apextrader.market.sources.base import Batch, MarketSource, SourceHealth
from apextrader.market.sources.ccxt_client import Backoff, describe, is_transient, make_exchange
from apextrader.market.sources.rest_feed import ExchangeFeed, wall_clock_ms

log = logging.getLogger(__name__)
T = TypeVar("T")
ClientFactory = Callable[[Exchange], ccxt_async.Exchange]


class CcxtSource(MarketSource):
    kind = "ccxt"

    def __init__(
        self,
        *,
        exchanges: list[Exchange],
        symbols: list[str],
        timeframe: str = "1m",
        backfill_bars: int = 600,
        hz: float = 2.0,
        depth_levels: int = 10,
        stale_after_s: float = 15.0,
        max_failures: int = 3,
        client_factory: ClientFactory = make_exchange,
        clock_ms: Callable[[], int] = wall_clock_ms,
        backoff: Backoff | None = None,
        open_attempts: int = 3,
    ) -> None:
        self.hz, self.backfill_bars, self.open_attempts = hz, backfill_bars, open_attempts
        self.backoff = backoff or Backoff()
        self.health = SourceHealth(exchanges, max_failures=max_failures, down_after=stale_after_s)
        self.feeds = {
            e: self._feed(
                e,
                client_factory,
                symbols,
                timeframe=timeframe,
                depth_levels=depth_levels,
                stale_after_s=stale_after_s,
                clock_ms=clock_ms,
            )
            for e in exchanges
        }
        self._attempts: dict[Exchange, int] = dict.fromkeys(exchanges, 0)

    def _feed(
        self, exchange: Exchange, client_factory: ClientFactory, symbols: list[str], **settings: Any
    ) -> ExchangeFeed:
        """The feed for one exchange (the websocket source streams where it can)."""
        return ExchangeFeed(exchange, client_factory(exchange), symbols, **settings)

    async def _guarded(
        self, exchange: Exchange, what: str, step: Callable[[], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        """Run one fetch step; on failure record it, back off, and return (False, None)."""
        try:
            value = await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._attempts[exchange] += 1
            reason = describe(exc)
            self.health.failure(exchange, reason)
            delay = self.backoff.delay(self._attempts[exchange])
            log.warning(
                f"{what} failed" + ("" if is_transient(exc) else " (not transient)"),
                extra={"exchange": exchange, "reason": reason, "retry_in_s": round(delay, 2)},
            )
            await asyncio.sleep(delay)
            return False, None
        self._attempts[exchange] = 0
        return True, value

    async def open(self) -> None:
        """Load every exchange's markets (a venue that stays down is retried by its live loop)."""

        async def open_one(e: Exchange) -> None:
            for _ in range(self.open_attempts):
                if (await self._guarded(e, "load markets", self.feeds[e].open))[0]:
                    return

        await asyncio.gather(*(open_one(e) for e in self.feeds))

    async def close(self) -> None:
        for feed in self.feeds.values():
            with contextlib.suppress(Exception):
                await feed.close()

    async def backfill(self) -> AsyncIterator[Batch]:
        for e, feed in self.feeds.items():
            if not feed.opened:
                continue
            for _ in range(self.open_attempts):
                ok, result = await self._guarded(
                    e, "backfill", functools.partial(feed.backfill, self.backfill_bars)
                )
                if ok:
                    self.health.ok(e)
                    if result:
                        yield result
                    break

    async def _reopen(self, exchange: Exchange, queue: asyncio.Queue[Batch]) -> None:
        """Load markets of an exchange that was down at start, then publish its backfill."""
        feed = self.feeds[exchange]
        if (await self._guarded(exchange, "load markets", feed.open))[0]:
            _, backfill = await self._guarded(
                exchange, "backfill", functools.partial(feed.backfill, self.backfill_bars)
            )
            if backfill:
                await queue.put(backfill)

    async def _loop(self, exchange: Exchange, queue: asyncio.Queue[Batch]) -> None:
        feed = self.feeds[exchange]
        interval = 1.0 / self.hz
        while True:
            started = time.monotonic()
            if not feed.opened:
                await self._reopen(exchange, queue)
                continue
            ok, batch = await self._guarded(exchange, "poll", feed.poll)
            if ok:
                if feed.stale_reason:
                    self.health.failure(exchange, feed.stale_reason)
                else:
                    self.health.ok(exchange)
                if batch:
                    await queue.put(batch)
            self.health.check(exchange)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def live(self) -> AsyncIterator[Batch]:
        queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=4 * len(self.feeds))
        tasks = [asyncio.create_task(self._loop(e, queue), name=f"ccxt-{e}") for e in self.feeds]
        try:
            while True:
                yield await queue.get()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
