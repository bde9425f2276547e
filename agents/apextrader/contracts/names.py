"""Agent ids, tracks and event types: the closed vocabularies every component shares."""

from __future__ import annotations

from typing import Final, Literal, get_args

AgentId = Literal[
    "market-scanner",
    "feature-engineer",
    "strategy-builder",
    "backtester",
    "event-watcher",
    "risk-manager",
    "execution",
]
Track = Literal["stable", "canary", "shared"]
#: The stream domains: one JetStream stream each per pipeline (`bus.topology` names and declares them).
Domain = Literal["MARKET", "ALERTS", "FEATURES", "SIGNALS", "ORDERS", "DLQ"]
DOMAINS: Final[tuple[Domain, ...]] = get_args(Domain)
DecisionTrack = Literal["stable", "canary"]

#: In pipeline order (the order `apex up` and the operator start them in).
AGENT_IDS: Final[tuple[AgentId, ...]] = (
    "market-scanner",
    "feature-engineer",
    "event-watcher",
    "strategy-builder",
    "backtester",
    "risk-manager",
    "execution",
)
assert set(AGENT_IDS) == set(get_args(AgentId))

#: Agents that run once per pipeline (track `shared`).
SHARED_AGENTS: Final[frozenset[AgentId]] = frozenset(
    {"market-scanner", "feature-engineer", "event-watcher", "backtester"}
)
#: Agents that run per track (`stable`, and `canary` while a canary exists).
DECISION_AGENTS: Final[frozenset[AgentId]] = frozenset({"strategy-builder", "risk-manager", "execution"})
DECISION_TRACKS: Final[tuple[DecisionTrack, ...]] = ("stable", "canary")


def agent_tracks(agent: AgentId, has_canary: bool) -> tuple[Track, ...]:
    """The tracks an agent runs on."""
    if agent in SHARED_AGENTS:
        return ("shared",)
    return ("stable", "canary") if has_canary else ("stable",)


EventType = Literal[
    "market.snapshot",
    "market.alert",
    "features.computed",
    "signal.proposed",
    "signal.validated",
    "signal.rejected",
    "order.approved",
    "order.submitted",
    "order.filled",
    "order.cancelled",
    "order.rejected",
]
EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)
