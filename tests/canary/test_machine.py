"""The pure canary state machine: examples for each rule, then properties over random histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from apextrader.canary import advance, analysis_due, max_declared_weight, track_weights
from apextrader.contracts.canary_spec import CanarySpec
from apextrader.contracts.status import AnalysisRun, CanaryStatus, CheckResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEPS: list[dict[str, Any]] = [
    {"setWeight": 5},
    {"pause": {"duration": "10m"}},
    {"analysis": {}},
    {"setWeight": 25},
    {"pause": {"duration": "5m"}},
    {"setWeight": 50},
]


def spec(**kw: Any) -> CanarySpec:
    kw.setdefault("analysis", {"failureLimit": 2})
    if "steps" not in kw:
        kw.setdefault("weight", 5)
    return CanarySpec.model_validate(kw)


def run(result: CheckResult, at: datetime) -> AnalysisRun:
    return AnalysisRun(at=at, result=result)


def test_no_canary_gives_stable_everything() -> None:
    st_ = advance(None, None, T0)
    assert st_.phase == "None" and st_.effective_weight == 0
    assert track_weights(0, has_canary=False) == {"stable": 100}
    assert track_weights(5, has_canary=True) == {"stable": 95, "canary": 5}


def test_manual_weight_is_declared_and_effective() -> None:
    st_ = advance(spec(weight=5), None, T0)
    assert (st_.phase, st_.declared_weight, st_.effective_weight) == ("Progressing", 5, 5)
    st_ = advance(spec(weight=5), st_, T0 + timedelta(minutes=5), run("Pass", T0))
    assert st_.phase == "Healthy"
    st_ = advance(spec(weight=20), st_, T0 + timedelta(minutes=6))
    assert st_.effective_weight == 20


def test_steps_walk_with_pause_and_analysis_gate() -> None:
    c = spec(steps=STEPS)
    s = advance(c, None, T0)
    assert (s.step_index, s.effective_weight) == (1, 5)  # setWeight applied, waiting on the pause
    s = advance(c, s, T0 + timedelta(minutes=9))
    assert s.step_index == 1
    s = advance(c, s, T0 + timedelta(minutes=10))
    assert s.step_index == 2 and s.effective_weight == 5  # analysis step waits for a verdict
    s = advance(c, s, T0 + timedelta(minutes=11), run("Inconclusive", T0 + timedelta(minutes=11)))
    assert s.step_index == 2 and s.phase == "Progressing"
    s = advance(c, s, T0 + timedelta(minutes=12), run("Pass", T0 + timedelta(minutes=12)))
    assert (s.step_index, s.effective_weight) == (4, 25)
    s = advance(c, s, T0 + timedelta(minutes=17))
    assert (s.step_index, s.effective_weight, s.phase) == (6, 50, "Healthy")
    assert "promote" in s.message


def test_pause_freezes_the_step_timer() -> None:
    c = spec(steps=STEPS)
    s = advance(c, None, T0)
    paused = spec(steps=STEPS, paused=True)
    s = advance(paused, s, T0 + timedelta(minutes=2))
    s = advance(paused, s, T0 + timedelta(hours=3))
    assert s.phase == "Paused" and s.step_index == 1 and s.effective_weight == 5
    s = advance(c, s, T0 + timedelta(hours=3, minutes=1))
    assert s.step_index == 1  # resume seen at 3h01: 2 of 10 minutes elapsed
    s = advance(c, s, T0 + timedelta(hours=3, minutes=8, seconds=59))
    assert s.step_index == 1
    s = advance(c, s, T0 + timedelta(hours=3, minutes=9))
    assert s.step_index == 2


def test_failing_analysis_aborts_and_stays_until_spec_changes() -> None:
    c = spec(weight=10)
    s = advance(c, None, T0)
    s = advance(c, s, T0 + timedelta(minutes=5), run("Fail", T0 + timedelta(minutes=5)))
    assert s.phase == "Degraded" and s.effective_weight == 10
    s = advance(c, s, T0 + timedelta(minutes=10), run("Fail", T0 + timedelta(minutes=10)))
    assert s.phase == "Aborted" and s.effective_weight == 0
    s = advance(c, s, T0 + timedelta(minutes=15), run("Pass", T0 + timedelta(minutes=15)))
    assert s.phase == "Aborted" and s.effective_weight == 0
    assert not analysis_due(c, s, T0 + timedelta(days=1))
    # a new template is a new revision: the rollout restarts
    s = advance(spec(weight=10, template={"risk": {"maxLeverage": 2}}), s, T0 + timedelta(minutes=20))
    assert s.phase == "Progressing" and s.effective_weight == 10 and s.consecutive_failures == 0


def test_abort_toggle_restarts_from_step_zero() -> None:
    c = spec(steps=STEPS)
    s = advance(c, None, T0 + timedelta(minutes=0))
    s = advance(c, s, T0 + timedelta(minutes=10))
    assert s.step_index == 2
    s = advance(spec(steps=STEPS, abort=True), s, T0 + timedelta(minutes=11))
    assert s.phase == "Aborted" and s.effective_weight == 0
    s = advance(c, s, T0 + timedelta(minutes=12))
    assert s.phase == "Progressing" and s.step_index == 1 and s.effective_weight == 5


def test_promote_gives_canary_everything() -> None:
    s = advance(spec(weight=5, promote=True), None, T0)
    assert s.phase == "Promoted" and s.effective_weight == 100 and s.declared_weight == 100


def test_analysis_due_every_interval() -> None:
    c = spec(weight=5, analysis={"interval": "5m"})
    s = advance(c, None, T0)
    assert analysis_due(c, s, T0)
    s = advance(c, s, T0, run("Pass", T0))
    assert not analysis_due(c, s, T0 + timedelta(minutes=4))
    assert analysis_due(c, s, T0 + timedelta(minutes=5))


# --- properties -------------------------------------------------------------------------------------

steps_st = st.lists(
    st.one_of(
        st.integers(0, 100).map(lambda w: {"setWeight": w}),
        st.sampled_from([{"pause": {"duration": "1m"}}, {"pause": {"duration": "7m"}}, {"pause": {}}]),
        st.just({"analysis": {}}),
    ),
    min_size=1,
    max_size=8,
).map(
    lambda ss: [  # setWeight values must ascend
        s if "setWeight" not in s else {"setWeight": w}
        for s, w in zip(ss, _ascending([s.get("setWeight", 0) for s in ss]), strict=True)
    ]
)


def _ascending(ws: list[int]) -> list[int]:
    out, top = [], 0
    for w in ws:
        top = max(top, w)
        out.append(top)
    return out


base_st = st.one_of(st.integers(0, 100).map(lambda w: {"weight": w}), steps_st.map(lambda s: {"steps": s}))
tick_st = st.tuples(
    st.integers(0, 900),  # seconds since the previous tick
    st.sampled_from([None, "Pass", "Fail", "Inconclusive"]),
    st.sampled_from(["same", "pause", "unpause", "abort", "unabort", "promote", "unpromote"]),
)


def _edit(c: dict[str, Any], action: str) -> dict[str, Any]:
    flag, value = {
        "pause": ("paused", True),
        "unpause": ("paused", False),
        "abort": ("abort", True),
        "unabort": ("abort", False),
        "promote": ("promote", True),
        "unpromote": ("promote", False),
    }.get(action, (None, None))
    if flag is None:
        return c
    c = {**c, flag: value}
    if c.get("abort") and c.get("promote"):
        c["promote" if flag == "abort" else "abort"] = False
    return c


@settings(max_examples=150, deadline=None)
@given(base=base_st, ticks=st.lists(tick_st, max_size=30))
def test_properties_over_random_histories(base: dict[str, Any], ticks: list[tuple[int, Any, str]]) -> None:
    now, doc = T0, {**base, "analysis": {"failureLimit": 2}}
    status: CanaryStatus | None = None
    for dt, verdict, action in ticks:
        now += timedelta(seconds=dt)
        doc = _edit(doc, action)
        c = CanarySpec.model_validate(doc)
        before = status
        status = advance(c, status, now, run(verdict, now) if verdict else None)
        # never exceeds the declared weight (100 only when promoted)
        limit = 100 if c.promote else max_declared_weight(c)
        assert 0 <= status.effective_weight <= limit
        assert status.effective_weight <= status.declared_weight or status.phase == "Aborted"
        if c.abort:
            assert status.phase == "Aborted" and status.effective_weight == 0
        # an analysis abort is terminal while spec.canary and the abort flag stay the same
        if (
            before is not None
            and before.phase == "Aborted"
            and not c.abort
            and not c.promote
            and before.revision == status.revision
            and before.consecutive_failures >= 2
        ):
            assert status.phase == "Aborted" and status.effective_weight == 0
        # pause freezes the steps: the index never moves while paused
        if (
            c.paused
            and before is not None
            and before.revision == status.revision
            and not c.promote
            and before.phase not in ("Aborted", "None", "Promoted")
            and status.phase != "Aborted"
        ):
            assert status.step_index == before.step_index
            assert status.effective_weight == before.effective_weight


@settings(max_examples=100, deadline=None)
@given(steps=steps_st, gaps=st.lists(st.integers(0, 3600), min_size=1, max_size=10))
def test_paused_rollout_holds_its_step_for_any_time(steps: list[dict[str, Any]], gaps: list[int]) -> None:
    c = CanarySpec.model_validate({"steps": steps})
    s = advance(c, None, T0)
    frozen = CanarySpec.model_validate({"steps": steps, "paused": True})
    now = T0
    for g in gaps:
        now += timedelta(seconds=g)
        nxt = advance(frozen, s, now, run("Pass", now))
        assert (nxt.step_index, nxt.effective_weight, nxt.phase) == (
            s.step_index,
            s.effective_weight,
            "Paused",
        )


def test_indefinite_pause_holds_until_resume_releases_that_step() -> None:
    steps = [{"setWeight": 5}, {"pause": {}}, {"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]
    s = advance(spec(steps=steps), None, T0)
    s = advance(spec(steps=steps), s, T0 + timedelta(days=30))
    assert (s.phase, s.step_index, s.effective_weight) == ("Paused", 1, 5)  # no timer ends it
    s = advance(spec(steps=steps, resumeStep=0), s, T0 + timedelta(days=30))  # an older release
    assert s.step_index == 1
    # `apex canary resume` releases the current step: on to the next indefinite pause, not past it
    s = advance(spec(steps=steps, resumeStep=1), s, T0 + timedelta(days=30, seconds=1))
    assert (s.phase, s.step_index, s.effective_weight) == ("Paused", 3, 25)
    s = advance(spec(steps=steps, resumeStep=3), s, T0 + timedelta(days=30, seconds=2))
    assert (s.step_index, s.effective_weight) == (5, 50) and s.phase != "Paused"
