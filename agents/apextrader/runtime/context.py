"""What an agent gets from the runtime: its pipeline and track spec, settings, logger, and the bus
(publish, KV, history) plus supervised background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from nats.js.api import PubAck

from apextrader.bus.history import history as read_history
from apextrader.bus.kv import KV
from apextrader.bus.publisher import Publisher
from apextrader.contracts import Envelope, TradingPipeline, TradingPipelineSpec
from apextrader.contracts.names import EventType, Track
from apextrader.runtime.settings import AgentSettings


@dataclass(frozen=True)
class AgentContext:
    pipeline: TradingPipeline
    #: `track_spec(pipeline.spec, track)`: this track's own parameters.
    spec: TradingPipelineSpec
    track: Track
    instance: str
    settings: AgentSettings
    log: logging.Logger
    publisher: Publisher
    kv: KV
    #: Starts a supervised task (set by the runner).
    _spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]

    async def publish(self, event: Envelope) -> PubAck:
        """Publish an event not derived from an input (e.g. a snapshot); awaits the PubAck."""
        return await self.publisher.publish(event)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A supervised background task: if it raises, the agent exits non-zero (and is restarted)."""
        return self._spawn(coro)

    def history(
        self, event_type: EventType, last: int = 1000, track: Track | None = None
    ) -> AsyncIterator[Envelope]:
        """The last `last` events of `event_type` from the stream, oldest first."""
        return read_history(self.publisher.js, self.pipeline.name, event_type, last=last, track=track)
