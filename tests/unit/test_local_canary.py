"""The local canary loop: requests from `apex canary ... --local` change the spec the pure state
machine sees, exactly as a spec edit would on the cluster."""

from __future__ import annotations

import pytest

from apextrader.contracts.canary_spec import CanarySpec
from apextrader.local.canary_driver import CanaryRequestError, apply_request

MANUAL = CanarySpec.model_validate({"weight": 5})
STEPPED = CanarySpec.model_validate({"steps": [{"setWeight": 5}, {"pause": {}}, {"setWeight": 50}]})


def test_set_weight_changes_the_manual_weight_and_clears_abort() -> None:
    aborted = MANUAL.model_copy(update={"abort": True})
    out = apply_request(aborted, {"action": "set-weight", "weight": 25})
    assert out.weight == 25 and not out.abort


@pytest.mark.parametrize("weight", [-1, 101])
def test_set_weight_out_of_range_is_refused(weight: int) -> None:
    with pytest.raises(CanaryRequestError, match="0-100"):
        apply_request(MANUAL, {"action": "set-weight", "weight": weight})


def test_set_weight_on_a_stepped_canary_is_refused_with_what_to_do() -> None:
    with pytest.raises(CanaryRequestError, match="pause, promote, abort or edit the steps"):
        apply_request(STEPPED, {"action": "set-weight", "weight": 25})


@pytest.mark.parametrize(
    ("action", "field", "value"),
    [
        ("pause", "paused", True),
        ("resume", "paused", False),
        ("promote", "promote", True),
        ("abort", "abort", True),
    ],
)
def test_flags(action: str, field: str, value: bool) -> None:
    assert getattr(apply_request(STEPPED, {"action": action}), field) is value


def test_abort_then_clear_abort_and_promote_excludes_abort() -> None:
    aborted = apply_request(MANUAL, {"action": "abort"})
    assert aborted.abort and not aborted.promote
    assert not apply_request(aborted, {"action": "clear-abort"}).abort
    promoted = apply_request(aborted, {"action": "promote"})
    assert promoted.promote and not promoted.abort


def test_unknown_action_is_refused() -> None:
    with pytest.raises(CanaryRequestError, match="unknown action"):
        apply_request(MANUAL, {"action": "explode"})


def test_resume_releases_the_indefinite_pause_at_the_current_step() -> None:
    paused = STEPPED.model_copy(update={"paused": True})
    out = apply_request(paused, {"action": "resume"}, step_index=2)
    assert out.paused is False and out.resume_step == 2
    assert apply_request(paused, {"action": "pause"}, step_index=2).resume_step is None
