"""The base class every agent subclasses (the runtime API: docs/conventions.md, "Layers")."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from apextrader.contracts.envelope import Handler
from apextrader.contracts.names import AgentId, EventType

if TYPE_CHECKING:
    from apextrader.runtime.context import AgentContext

__all__ = ["Agent", "Handler"]


class Agent(abc.ABC):
    """An agent: handlers per consumed event type, plus optional background work.

    A handler gets a decoded, validated event and returns the events it derives
    (`event.derive(...)`); the runtime publishes them before acking the input. Raise
    `apextrader.bus.errors.Reject` for input that will never succeed (DLQ at once); any other
    exception is retried with back-off and dead-lettered after `max_deliver`.
    """

    agent_id: ClassVar[AgentId]

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    def subscriptions(self) -> Mapping[EventType, Handler]:
        """Which event types this agent consumes, and the handler of each."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Called after the consumers are bound; start background loops with `ctx.spawn()`."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Graceful stop (SIGTERM): finish work, cancel orders if configured."""

    def is_ready(self) -> bool:
        """Extra readiness (e.g. the scanner's source is up)."""
        return True
