"""The one interface every market source implements, and its per-exchange health.

A source yields batches of `MarketSnapshot`s (or their wire form, `market.wire.WireSnapshot`): first `backfill()` (closed history bars, marked
`backfill: true`), then `live()` forever. The scanner publishes each batch concurrently and waits
for the acks before asking for the next, so a slow bus slows the source down (backpressure).
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from apextrader.contracts.payloads import Exchange, MarketSnapshot
from apextrader.market.wire import WireSnapshot

#: Models, or `WireSnapshot`s from a source that builds them valid by construction (synthetic).
Batch = Sequence[MarketSnapshot | WireSnapshot]
HealthListener = Callable[[Exchange, bool, str], None]


@dataclass
class ExchangeHealth:
    up: bool = True
    failures: int = 0
    last_ok: float = field(default_factory=time.monotonic)
    reason: str = ""


class SourceHealth:
    """Up/down per exchange. Down after `max_failures` consecutive failures or `down_after` seconds
    without a successful fetch; up again on the next success. Listeners hear every transition."""

    def __init__(
        self,
        exchanges: list[Exchange],
        *,
        max_failures: int = 3,
        down_after: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.down_after = down_after
        self.exchanges: dict[Exchange, ExchangeHealth] = {
            e: ExchangeHealth(last_ok=clock()) for e in exchanges
        }
        self._listeners: list[HealthListener] = []

    def subscribe(self, listener: HealthListener) -> None:
        self._listeners.append(listener)

    def up(self, exchange: Exchange) -> bool:
        return self.exchanges[exchange].up

    @property
    def all_up(self) -> bool:
        return all(h.up for h in self.exchanges.values())

    def ok(self, exchange: Exchange) -> None:
        h = self.exchanges[exchange]
        h.failures, h.last_ok = 0, self._clock()
        if not h.up:
            self._set(exchange, True, "data flowing again")

    def ok_all(self) -> None:
        for exchange in self.exchanges:
            self.ok(exchange)

    def failure(self, exchange: Exchange, reason: str) -> None:
        h = self.exchanges[exchange]
        h.failures += 1
        h.reason = reason
        if h.up and (h.failures >= self.max_failures or self._silent_for(h) > self.down_after):
            self._set(exchange, False, reason)

    def check(self, exchange: Exchange) -> None:
        """Mark the exchange down when it has been silent too long (called from the poll loop)."""
        h = self.exchanges[exchange]
        if h.up and self._silent_for(h) > self.down_after:
            self._set(exchange, False, h.reason or f"no data for {self._silent_for(h):.0f}s")

    def _silent_for(self, h: ExchangeHealth) -> float:
        return self._clock() - h.last_ok

    def _set(self, exchange: Exchange, up: bool, reason: str) -> None:
        self.exchanges[exchange].up = up
        for listener in self._listeners:
            listener(exchange, up, reason)


class MarketSource(abc.ABC):
    """Backfill, then live batches of snapshots; `health` says which exchanges deliver."""

    kind: str
    health: SourceHealth

    async def open(self) -> None:
        """Connect / load what the source needs (markets, files)."""
        return None

    async def close(self) -> None:
        """Release connections."""
        return None

    @abc.abstractmethod
    def backfill(self) -> AsyncIterator[Batch]:
        """Closed history bars (`backfill: true`), oldest first."""

    @abc.abstractmethod
    def live(self) -> AsyncIterator[Batch]:
        """Snapshots as the market moves (closed bars and, between closes, the forming bar)."""
