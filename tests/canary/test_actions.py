"""`canary.actions.apply_action`: one function decides what each `apex canary` action does to the spec."""

from __future__ import annotations

from typing import Any

import pytest

from apextrader.canary import ActionError, CanaryAction, apply_action, fold
from apextrader.contracts import track_spec
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.status import CanaryStatus

BASE: dict[str, Any] = {"symbols": ["BTC/USDT:USDT"], "risk": {"maxLeverage": 3}}
MANUAL = {**BASE, "canary": {"weight": 5, "template": {"risk": {"maxLeverage": 2}}}}
STEPPED = {**BASE, "canary": {"steps": [{"setWeight": 5}, {"pause": {}}, {"setWeight": 50}]}}


def act(spec: dict[str, Any], action: str, status: CanaryStatus | None = None, **kw: Any) -> dict[str, Any]:
    return apply_action(spec, status, CanaryAction(action=action, **kw)).spec  # type: ignore[arg-type]


def test_set_weight_changes_the_weight_and_leaves_an_abort_in_place() -> None:
    aborted = act(MANUAL, "abort")
    result = apply_action(aborted, None, CanaryAction(action="set-weight", weight=25))
    assert result.spec["canary"]["weight"] == 25 and result.spec["canary"]["abort"] is True
    assert "abort --clear" in result.message


@pytest.mark.parametrize("weight", [-1, 101])
def test_set_weight_out_of_range_is_refused(weight: int) -> None:
    with pytest.raises(ActionError, match="0-100"):
        act(MANUAL, "set-weight", weight=weight)


def test_set_weight_on_a_stepped_canary_is_refused_with_what_to_do() -> None:
    with pytest.raises(ActionError, match="pause, promote, abort or edit the steps"):
        act(STEPPED, "set-weight", weight=25)


def test_abort_clears_promote_and_clear_abort_clears_abort() -> None:
    aborted = act(MANUAL, "abort")
    assert aborted["canary"]["abort"] is True and aborted["canary"]["promote"] is False
    assert act(aborted, "clear-abort")["canary"]["abort"] is False


def test_resume_releases_the_indefinite_pause_at_the_current_step() -> None:
    paused = act(STEPPED, "pause")
    out = act(paused, "resume", CanaryStatus(phase="Paused", step_index=1))
    assert out["canary"]["paused"] is False and out["canary"]["resumeStep"] == 1
    assert "resumeStep" not in act(paused, "resume")["canary"]


def test_promote_folds_the_template_through_track_spec_and_keeps_only_user_keys() -> None:
    folded = fold(MANUAL)
    assert "canary" not in folded and folded["risk"] == {"maxLeverage": 2}
    assert set(folded) == {"symbols", "risk"}
    canary_view = track_spec(TradingPipelineSpec.model_validate(MANUAL), "canary")
    assert TradingPipelineSpec.model_validate(folded).risk == canary_view.risk


def test_promote_refuses_a_template_that_makes_the_spec_invalid() -> None:
    bad = {**BASE, "canary": {"weight": 5, "template": {"risk": {"maxLeverage": -1}}}}
    with pytest.raises(ActionError, match=r"spec\.canary\.template"):
        fold(bad)


def test_no_canary_is_refused() -> None:
    with pytest.raises(ActionError, match=r"no spec\.canary"):
        act(BASE, "pause")
