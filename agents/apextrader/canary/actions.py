"""`apex canary set-weight|pause|resume|promote|abort` as one pure function of (spec, status, action).

The cluster backend (`apex canary ... -n NS`) patches the CR with the spec it returns; the local
backend (`apex canary ... --local`, through KV `canary.request`) hands the same spec to the local
supervisor. Both then run the same state machine, so an action means the same on both.

Semantics (docs/conventions.md, "Canary semantics"; Argo Rollouts' where the copies disagreed):
- `set-weight W` (manual canaries only): `weight = W`. It does not lift an abort: an abort is a
  safety stop, lifted only by `abort --clear` (Argo's `retry`); the message says so.
- `pause` / `resume`: `paused`; resume also releases an indefinite pause at the current step.
- `promote`: `canary.template` folded into the base spec and `spec.canary` removed (Argo's full
  promotion): the canary's parameters become the stable's. Refused if the folded spec is invalid.
- `abort` (`promote` cleared) and `clear-abort`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, ValidationError

from apextrader.canary.weights import WeightError, parse_weight
from apextrader.contracts.base import SpecModel
from apextrader.contracts.pipeline import PipelineError, format_errors, track_spec
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.status import CanaryStatus

ActionName = Literal["set-weight", "pause", "resume", "promote", "abort", "clear-abort"]
ACTIONS: tuple[ActionName, ...] = ("set-weight", "pause", "resume", "promote", "abort", "clear-abort")


class CanaryAction(SpecModel):
    """One action; also the JSON of KV `canary.request` (`{"action": ..., "weight": ...}`)."""

    action: ActionName
    weight: int | None = Field(default=None, description="set-weight only: 0-100.")


class ActionError(ValueError):
    """The action cannot apply to this spec (the message says what to do instead)."""


@dataclass(frozen=True)
class ActionResult:
    spec: dict[str, Any]
    message: str


def fold(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec after a promote: the canary track's spec (`contracts.track_spec`, the RFC 7386 merge
    of `canary.template` into the base) with `spec.canary` removed; only the user's keys are kept."""
    try:
        model = TradingPipelineSpec.model_validate(spec)
        merged = track_spec(model, "canary")
    except ValidationError as exc:
        raise ActionError("the spec is invalid: " + "; ".join(format_errors(exc, "spec"))) from None
    except PipelineError as exc:
        raise ActionError("promoting would make the spec invalid: " + "; ".join(exc.errors)) from None
    doc = merged.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")
    doc.pop("canary", None)
    return dict(doc)


def _canary_changes(
    action: CanaryAction, canary: Mapping[str, Any], status: CanaryStatus | None
) -> dict[str, Any]:
    if action.action == "set-weight":
        if canary.get("steps") is not None:
            raise ActionError(
                "set-weight is refused on a stepped canary (spec.canary.steps): "
                "pause, promote, abort or edit the steps instead"
            )
        try:
            return {"weight": parse_weight(action.weight)}
        except WeightError as exc:
            raise ActionError(str(exc)) from None
    if action.action == "resume":
        step = status.step_index if status is not None else None
        return {"paused": False} | ({"resumeStep": step} if step is not None else {})
    return {
        "pause": {"paused": True},
        "abort": {"abort": True, "promote": False},
        "clear-abort": {"abort": False},
    }[action.action]


def _message(action: CanaryAction, canary: Mapping[str, Any], status: CanaryStatus | None) -> str:
    if action.action == "set-weight":
        note = ""
        if canary.get("abort"):
            note = "; the canary stays aborted (apex canary abort --clear to restart)"
        return f"canary weight {action.weight}%{note}"
    if action.action == "resume" and status is not None and status.step_index is not None:
        return f"resume (past step {status.step_index})"
    return action.action


def apply_action(spec: Mapping[str, Any], status: CanaryStatus | None, action: CanaryAction) -> ActionResult:
    """The spec (a CR's `spec`, camelCase) after `action`, given the current canary status."""
    canary = spec.get("canary")
    if not canary:
        raise ActionError("this pipeline has no spec.canary")
    if action.action == "promote":
        return ActionResult(fold(spec), "promoted (template folded into the spec, canary removed)")
    new_canary = {**canary, **_canary_changes(action, canary, status)}
    new_spec = {**copy.deepcopy(dict(spec)), "canary": new_canary}
    try:
        TradingPipelineSpec.model_validate(new_spec)
    except ValidationError as exc:
        raise ActionError("; ".join(format_errors(exc, "spec"))) from None
    return ActionResult(new_spec, _message(action, canary, status))
