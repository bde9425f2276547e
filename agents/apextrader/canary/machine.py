"""The canary state machine (docs/conventions.md, "Canary semantics"): pure, clock passed in.

`advance(canary, status, now, analysis)` returns the next `CanaryStatus`. The operator calls it from
its timer and on every spec change, the local supervisor from its loop; both write
`status.effective_weight` to KV `canary.weight`. Nothing here reads a clock or does I/O.

Rules:
- manual `weight`: declared = weight; `steps`: declared = the last `setWeight` at or before the
  current step (0 before the first one).
- `abort` (level) or `failureLimit` consecutive failing analyses → `Aborted`, effective 0. An analysis
  abort stays until `spec.canary` changes (its `revision`) or `abort` is toggled; then the rollout
  restarts from step 0.
- `promote` (level) → `Promoted`, effective 100.
- `paused` freezes the step timer (a pause step's elapsed time does not grow); weights stay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from apextrader.contracts.canary_spec import CanarySpec, CanaryStep
from apextrader.contracts.status import AnalysisRun, CanaryPhase, CanaryStatus
from apextrader.contracts.units import parse_duration

#: Flags that steer a rollout without changing what is rolled out.
CONTROL_FLAGS = frozenset({"paused", "promote", "abort", "resume_step", "abort_policy"})


#: What an aborted canary does with its positions, per `abortPolicy` (said in the status message).
POSITIONS_ON_ABORT: dict[str, str] = {
    "hold": "positions held (abortPolicy hold: no entries, no exits)",
    "drain": "positions draining (abortPolicy drain: exits only until flat)",
    "flatten": "positions flattened (abortPolicy flatten: closed at market, reason abort_flatten)",
}


def revision(canary: CanarySpec) -> str:
    """Hash of `spec.canary` minus the control flags: a change restarts the rollout."""
    doc = canary.model_dump(by_alias=False, exclude=set(CONTROL_FLAGS))
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def declared_weight(canary: CanarySpec, step_index: int | None) -> int:
    """What the spec asks for: the manual weight, or the last `setWeight` reached by the steps."""
    if canary.promote:
        return 100
    if canary.weight is not None:
        return canary.weight
    reached = (canary.steps or [])[: (step_index or 0) + 1]
    weights = [s.set_weight for s in reached if s.set_weight is not None]
    return weights[-1] if weights else 0


def max_declared_weight(canary: CanarySpec) -> int:
    if canary.weight is not None:
        return canary.weight
    return max((s.set_weight for s in canary.steps or [] if s.set_weight is not None), default=0)


def kv_state(phase: CanaryPhase) -> str:
    """The informative KV `canary.state` value for a phase."""
    return {"None": "none", "Aborted": "aborted", "Promoted": "promoted", "Paused": "paused"}.get(
        phase, "progressing"
    )


def analysis_due(canary: CanarySpec | None, status: CanaryStatus, now: datetime) -> bool:
    """Whether an analysis should run now (every `interval`, only while the rollout is live)."""
    if canary is None or status.phase in ("None", "Aborted", "Promoted") or canary.abort or canary.promote:
        return False
    if status.last_analysis is None:
        return True
    interval = parse_duration(canary.analysis.interval)
    return now - status.last_analysis.at >= interval


def _fresh(canary: CanarySpec, now: datetime) -> CanaryStatus:
    return CanaryStatus(
        phase="Progressing",
        revision=revision(canary),
        step_index=0 if canary.steps else None,
        step_started_at=now,
    )


def _analysis_aborted(canary: CanarySpec, status: CanaryStatus) -> bool:
    return status.consecutive_failures >= canary.analysis.failure_limit


def _record_analysis(canary: CanarySpec, status: CanaryStatus, run: AnalysisRun) -> None:
    status.last_analysis = run
    status.failed_checks = [c.name for c in run.checks if c.result == "Fail"]
    if run.result == "Fail":
        status.consecutive_failures += 1
    elif run.result == "Pass":
        status.consecutive_failures = 0


def _released(canary: CanarySpec, index: int) -> bool:
    """An indefinite pause at `index` was released by `resumeStep`."""
    return canary.resume_step is not None and canary.resume_step >= index


def _step_waits(
    step: CanaryStep, released: bool, status: CanaryStatus, now: datetime, run: AnalysisRun | None
) -> bool:
    """Whether the current step still holds the rollout."""
    if step.set_weight is not None:
        return False
    if step.pause is not None:
        if step.pause.duration is None:
            return not released
        started = status.step_started_at or now
        return now - started < parse_duration(step.pause.duration)
    # analysis step: wait for a passing verdict taken at this step
    return run is None or run.result != "Pass"


def _walk_steps(canary: CanarySpec, status: CanaryStatus, now: datetime, run: AnalysisRun | None) -> None:
    steps = canary.steps or []
    index = status.step_index or 0
    while index < len(steps) and not _step_waits(steps[index], _released(canary, index), status, now, run):
        index += 1
        status.step_started_at = now
        run = None  # an analysis verdict satisfies one analysis step only
    status.step_index = index


def _track_pause(canary: CanarySpec, status: CanaryStatus, now: datetime) -> None:
    """Freeze the step timer: on resume, move `step_started_at` forward by the paused time."""
    if canary.paused and status.paused_at is None:
        status.paused_at = now
    elif not canary.paused and status.paused_at is not None:
        if status.step_started_at is not None:
            status.step_started_at += max(now - status.paused_at, timedelta(0))
        status.paused_at = None


def _phase(canary: CanarySpec, status: CanaryStatus) -> CanaryPhase:
    if canary.paused:
        return "Paused"
    steps = canary.steps or []
    index = status.step_index or 0
    if (
        index < len(steps)
        and steps[index].pause is not None
        and steps[index].pause.duration is None  # type: ignore[union-attr]
        and not _released(canary, index)
    ):
        return "Paused"
    last = status.last_analysis
    if last is not None and last.result == "Fail":
        return "Degraded"
    if last is not None and last.result == "Pass" and index >= len(steps):
        return "Healthy"
    return "Progressing"


def _message(canary: CanarySpec, status: CanaryStatus) -> str:
    if status.phase == "Promoted":
        return "promoted: fold canary.template into the spec and remove spec.canary (apex canary promote)"
    if status.phase == "Aborted":
        positions = POSITIONS_ON_ABORT[canary.abort_policy]
        if canary.abort:
            return f"aborted by spec.canary.abort; {positions}"
        failed = ", ".join(status.failed_checks) or "analysis"
        return (
            f"aborted after {status.consecutive_failures} failing analyses ({failed}); {positions}; "
            "edit spec.canary or toggle abort to restart"
        )
    steps = canary.steps or []
    index = status.step_index or 0
    if canary.paused:
        return "paused: the step timer is frozen"
    if steps and index < len(steps):
        step = steps[index]
        if step.pause is not None:
            until = (
                "indefinitely (edit the steps, promote or abort)"
                if step.pause.duration is None
                else f"for {step.pause.duration}"
            )
            return f"step {index}: pause {until}"
        if step.analysis is not None:
            return f"step {index}: waiting for a passing analysis"
    if steps and index >= len(steps):
        return "all steps done: promote to make the canary the stable"
    return ""


def advance(
    canary: CanarySpec | None,
    status: CanaryStatus | None,
    now: datetime,
    analysis: AnalysisRun | None = None,
) -> CanaryStatus:
    """The next canary status for the spec, the previous status, the time and an analysis verdict."""
    if canary is None:
        return CanaryStatus(phase="None", applied_weight=dict(status.applied_weight) if status else {})
    prev = status or CanaryStatus()
    rev = revision(canary)
    if prev.revision != rev or (prev.phase in ("None", "Promoted") and not canary.promote):
        nxt = _fresh(canary, now)
        nxt.applied_weight = dict(prev.applied_weight)
        nxt.last_analysis = None
    else:
        nxt = prev.model_copy(deep=True)
    if canary.abort:
        # Observing the flag counts as the "toggle": clearing it later restarts from step 0.
        nxt.phase, nxt.consecutive_failures = "Aborted", 0
    elif prev.phase == "Aborted" and prev.revision == rev and not _analysis_aborted(canary, prev):
        nxt = _fresh(canary, now)
        nxt.applied_weight = dict(prev.applied_weight)
    if analysis is not None and not canary.abort and not canary.promote and nxt.phase != "Aborted":
        _record_analysis(canary, nxt, analysis)
    _track_pause(canary, nxt, now)

    if canary.promote:
        nxt.phase = "Promoted"
    elif canary.abort or _analysis_aborted(canary, nxt):
        nxt.phase = "Aborted"
    else:
        if canary.steps and not canary.paused:
            _walk_steps(canary, nxt, now, analysis)
        nxt.phase = _phase(canary, nxt)

    nxt.declared_weight = declared_weight(canary, nxt.step_index)
    nxt.effective_weight = {"Promoted": 100, "Aborted": 0}.get(nxt.phase, nxt.declared_weight)
    nxt.message = _message(canary, nxt)
    return nxt


def latest_echo(echoes: Mapping[str, Any]) -> Any:
    """The most recent of a track's `applied.<agent>.<track>.<instance>` echoes (by their `at`)."""
    if not echoes:
        return None
    return max(echoes.values(), key=lambda v: str(v.get("at", "")) if isinstance(v, dict) else "")


def with_positions(status: CanaryStatus, canary_echoes: Mapping[str, Any]) -> CanaryStatus:
    """An aborted status's message, completed with the positions the canary's risk manager last said
    it still holds (its echo's `open_positions`), on either backend."""
    latest = latest_echo(canary_echoes)
    held = latest.get("open_positions") if isinstance(latest, dict) else None
    if status.phase != "Aborted" or not isinstance(held, int):
        return status
    return status.model_copy(
        update={"message": f"{status.message}; the canary holds {held} open position(s)"}
    )
