"""`spec.agents`: per agent its replicas, resources and typed settings (docs/conventions.md §1).

Each agent id has its own model, so a key the agent does not know is refused (by pydantic here and
by the CRD generated from these models) with a message naming the field. Settings sit directly in
the agent's entry, beside `replicas` and `resources`:

    agents:
      feature-engineer: {intrabar: true, resources: {requests: {memory: 256Mi}}}
      strategy-builder: {replicas: 3}
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, overload

from pydantic import Field, field_validator

from apextrader.contracts.base import SpecModel
from apextrader.contracts.names import AgentId

#: `features.computed` events the feature engineer reads back at start (every series).
HISTORY_EVENTS: Final = 50_000
SINGLE_REPLICA_MESSAGE: Final = "only strategy-builder may run more than 1 replica"


class ResourceList(SpecModel):
    cpu: str | None = None
    memory: str | None = None


class Resources(SpecModel):
    requests: ResourceList = Field(default_factory=ResourceList)
    limits: ResourceList = Field(default_factory=ResourceList)


class AgentSpec(SpecModel):
    """What every agent has: replicas and container resources."""

    replicas: Annotated[int, Field(ge=0, le=20)] = 1
    resources: Resources = Field(default_factory=Resources)


class SingleReplicaAgent(AgentSpec):
    """An agent that keeps state per pipeline and track: at most one replica."""

    @field_validator("replicas")
    @classmethod
    def _one_replica(cls, replicas: int) -> int:
        if replicas > 1:
            raise ValueError(SINGLE_REPLICA_MESSAGE)
        return replicas


class MarketScannerSpec(SingleReplicaAgent):
    #: `clock`: offline sources run on the accelerated clock (`source.speed`); `max`: publish as
    #: fast as the bus acknowledges.
    pace: Literal["clock", "max"] = "clock"


class FeatureEngineerSpec(SingleReplicaAgent):
    #: A forming bar emits features computed on its bar so far (`is_closed: false`).
    intrabar: bool = False
    #: Its own `features.computed` events read back at start to rebuild the indicator state.
    history_events: Annotated[int, Field(ge=0)] = HISTORY_EVENTS


class StrategyBuilderSpec(AgentSpec):
    """Stateless: the one agent that may scale out."""


class BacktesterSpec(SingleReplicaAgent):
    pass


class EventWatcherSpec(SingleReplicaAgent):
    pass


class RiskManagerSpec(SingleReplicaAgent):
    #: The share of the visible depth on the side an entry takes that it may use (bounds paper and
    #: live slippage).
    max_book_participation: Annotated[float, Field(gt=0, le=1)] = 0.25


class ExecutionAgentSpec(SingleReplicaAgent):
    pass


#: The model of each agent's entry.
AGENT_MODELS: Final[dict[AgentId, type[AgentSpec]]] = {
    "market-scanner": MarketScannerSpec,
    "feature-engineer": FeatureEngineerSpec,
    "strategy-builder": StrategyBuilderSpec,
    "backtester": BacktesterSpec,
    "event-watcher": EventWatcherSpec,
    "risk-manager": RiskManagerSpec,
    "execution": ExecutionAgentSpec,
}


class AgentsSpec(SpecModel):
    """Keyed by agent id; an agent not named runs with its defaults."""

    market_scanner: MarketScannerSpec | None = Field(None, alias="market-scanner")
    feature_engineer: FeatureEngineerSpec | None = Field(None, alias="feature-engineer")
    strategy_builder: StrategyBuilderSpec | None = Field(None, alias="strategy-builder")
    backtester: BacktesterSpec | None = Field(None, alias="backtester")
    event_watcher: EventWatcherSpec | None = Field(None, alias="event-watcher")
    risk_manager: RiskManagerSpec | None = Field(None, alias="risk-manager")
    execution: ExecutionAgentSpec | None = Field(None, alias="execution")

    @overload
    def of(self, agent: Literal["market-scanner"]) -> MarketScannerSpec: ...
    @overload
    def of(self, agent: Literal["feature-engineer"]) -> FeatureEngineerSpec: ...
    @overload
    def of(self, agent: Literal["risk-manager"]) -> RiskManagerSpec: ...
    @overload
    def of(self, agent: AgentId) -> AgentSpec: ...
    def of(self, agent: AgentId) -> AgentSpec:
        """The agent's entry, or its defaults when the spec does not name it."""
        entry: AgentSpec | None = getattr(self, agent.replace("-", "_"))
        return entry if entry is not None else AGENT_MODELS[agent]()
