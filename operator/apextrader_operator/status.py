"""Status helpers: standard conditions (lastTransitionTime kept while the status holds) and the
merge patch that turns the stored status into the new one."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from apextrader.contracts.status import Condition, ConditionType, TradingPipelineStatus

ConditionStatus = Literal["True", "False", "Unknown"]


def set_condition(
    status: TradingPipelineStatus,
    previous: TradingPipelineStatus,
    kind: ConditionType,
    value: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> None:
    before = next((c for c in previous.conditions if c.type == kind), None)
    since = before.last_transition_time if before is not None and before.status == value else now
    status.conditions = [c for c in status.conditions if c.type != kind]
    status.conditions.append(
        Condition(
            type=kind,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=since,
            observed_generation=generation,
        )
    )


def condition(status: TradingPipelineStatus, kind: ConditionType) -> Condition | None:
    return next((c for c in status.conditions if c.type == kind), None)


def dump(status: TradingPipelineStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def load(raw: Any) -> TradingPipelineStatus:
    """The stored status, or an empty one when absent or written by someone else (e.g. kopf's own keys)."""
    if not isinstance(raw, dict):
        return TradingPipelineStatus()
    fields = set(TradingPipelineStatus.model_fields) | {
        f.alias for f in TradingPipelineStatus.model_fields.values() if f.alias
    }
    try:
        return TradingPipelineStatus.model_validate({k: v for k, v in raw.items() if k in fields})
    except ValueError:
        return TradingPipelineStatus()
