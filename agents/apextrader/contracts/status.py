"""The TradingPipeline `status` (written by the operator; `apex up` keeps the same shape)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from apextrader.contracts.base import SpecModel

ConditionType = Literal["Ready", "BusReady", "AgentsReady", "CanaryHealthy", "InvalidSpec"]
Phase = Literal["Pending", "Provisioning", "Running", "Degraded", "Invalid", "Terminating"]
CanaryPhase = Literal["None", "Progressing", "Paused", "Healthy", "Degraded", "Aborted", "Promoted"]
CheckResult = Literal["Pass", "Fail", "Inconclusive"]


class StatusModel(SpecModel):
    # Pydantic merges this with SpecModel's config; the mypy plugin reads the literal ConfigDict.
    model_config = ConfigDict(frozen=False)


class Condition(StatusModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


class AgentStatus(StatusModel):
    track: Literal["stable", "canary", "shared"]
    replicas: int = 0
    ready_replicas: int = 0


class AnalysisCheck(StatusModel):
    name: Literal["maxAvgSlippageBps", "maxMarginViolations", "maxDlqLoss", "maxBusP99Ms", "minExpectancy"]
    value: float | None = None
    threshold: float
    result: CheckResult


class AnalysisRun(StatusModel):
    at: datetime
    track: Literal["stable", "canary"] = "canary"
    result: CheckResult
    checks: list[AnalysisCheck] = Field(default_factory=list)


class CanaryStatus(StatusModel):
    phase: CanaryPhase = "None"
    #: The weight the spec asks for (the manual weight or the current step's).
    declared_weight: int = 0
    #: What the KV holds as `canary.weight` (0 when aborted, 100 when promoted).
    effective_weight: int = 0
    #: The weight each track's risk managers echoed (None: not yet echoed).
    applied_weight: dict[str, int | None] = Field(default_factory=dict)
    step_index: int | None = None
    step_started_at: datetime | None = None
    #: When `spec.canary.paused` was first seen true (the step timer is frozen from then on).
    paused_at: datetime | None = None
    #: Hash of `spec.canary` minus the control flags: a change restarts an aborted rollout.
    revision: str | None = None
    consecutive_failures: int = 0
    last_analysis: AnalysisRun | None = None
    failed_checks: list[str] = Field(default_factory=list)
    message: str = ""


class TradingPipelineStatus(StatusModel):
    observed_generation: int | None = None
    phase: Phase = "Pending"
    conditions: list[Condition] = Field(default_factory=list)
    agents: dict[str, AgentStatus] = Field(default_factory=dict)
    canary: CanaryStatus = Field(default_factory=CanaryStatus)
    message: str = ""
