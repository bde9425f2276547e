"""`spec.canary`: the canary capital split (docs/conventions.md §1, "Canary semantics")."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from apextrader.contracts.agent_spec import AgentsSpec
from apextrader.contracts.base import SpecModel
from apextrader.contracts.units import Duration

MAX_STEPS = 20
AbortPolicy = Literal["hold", "drain", "flatten"]
Weight = Annotated[int, Field(ge=0, le=100, description="Percent of capital on the canary track (0-100).")]


class PauseStep(SpecModel):
    #: Absent = pause until released: `apex canary resume` (spec.canary.resumeStep) or edited steps.
    duration: Duration | None = None


class AnalysisStepSpec(SpecModel):
    """Run the analysis once at this step; the rollout waits for a verdict."""


class CanaryStep(SpecModel):
    """Exactly one of `setWeight`, `pause`, `analysis` (Argo Rollouts' step vocabulary)."""

    set_weight: Weight | None = None
    pause: PauseStep | None = None
    analysis: AnalysisStepSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CanaryStep:
        given = [k for k in ("set_weight", "pause", "analysis") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a step has exactly one of setWeight, pause, analysis")
        return self


class CanaryAnalysis(SpecModel):
    """Thresholds of the Go/No-Go analysis (defaults: the seed's Go/No-Go list)."""

    interval: Duration = "5m"
    failure_limit: Annotated[int, Field(ge=1)] = 2
    max_avg_slippage_bps: Annotated[float, Field(ge=0)] = 5.0
    max_margin_violations: Annotated[int, Field(ge=0)] = 0
    max_dlq_loss: Annotated[int, Field(ge=0)] = 0
    max_bus_p99_ms: Annotated[float, Field(gt=0)] = 100.0
    min_expectancy: float = 0.0
    #: Run the checks as PromQL against this Prometheus instead of scraping agents directly.
    prometheus_url: str | None = None


class CanaryTemplate(SpecModel):
    """What the canary track changes: an RFC 7386 merge patch over the base spec's sections."""

    strategies: dict[str, Any] | None = None
    risk: dict[str, Any] | None = None
    execution: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    #: Typed like `spec.agents` (unknown keys refused up front); only the keys written are merged.
    agents: AgentsSpec | None = None


class CanarySpec(SpecModel):
    weight: Weight | None = None
    #: At most MAX_STEPS steps (the CRD's CEL rule checks the order pairwise up to that bound).
    steps: Annotated[list[CanaryStep], Field(max_length=MAX_STEPS)] | None = None
    template: CanaryTemplate = Field(default_factory=CanaryTemplate)
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis)
    #: Freeze the step timer; weights stay.
    paused: bool = False
    #: Indefinite `pause: {}` steps at or before this index are released (Argo Rollouts' `promote`
    #: past a pause); `apex canary resume` sets it to the current step. Changing it restarts nothing.
    resume_step: Annotated[int, Field(ge=0, le=MAX_STEPS)] | None = None
    #: Level-triggered: canary 100 %, stable opens no new positions.
    promote: bool = False
    #: Level-triggered: canary 0 %, opens no positions.
    abort: bool = False
    #: What an aborted canary does with its open positions (docs/conventions.md §1): `hold` keeps
    #: them (no entries, no exits from its signals), `drain` exits only until flat, `flatten` closes
    #: them at market at once (each order says `abort_flatten`).
    abort_policy: AbortPolicy = "drain"

    @model_validator(mode="after")
    def _weight_or_steps(self) -> CanarySpec:
        if (self.weight is None) == (self.steps is None):
            raise ValueError("canary needs exactly one of weight (manual) or steps (automatic)")
        if self.steps is not None:
            if not self.steps:
                raise ValueError("steps: give at least one step")
            weights = [s.set_weight for s in self.steps if s.set_weight is not None]
            if any(b < a for a, b in itertools.pairwise(weights)):
                raise ValueError("steps: setWeight values must be ascending")
        if self.promote and self.abort:
            raise ValueError("promote and abort cannot both be true")
        return self
