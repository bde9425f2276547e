"""Every `apex canary` action against every phase, on both backends, gives the same spec, phase and
weights: the cluster path (the CLI's patch of the CR, then the operator's `step_canary`) and the
local path (KV `canary.request` into `apex up`'s `LocalCanary` on a real NATS KV)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from apextrader.bus.kv import KV
from apextrader.bus.topology import KV_CANARY_REQUEST, KV_CANARY_WEIGHT
from apextrader.canary import ACTIONS, ActionError, CanaryAction, apply_action, track_weights
from apextrader.contracts.pipeline import TradingPipeline
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.status import AnalysisCheck, AnalysisRun, CanaryStatus
from apextrader.local.canary_driver import LocalCanary, request_json
from apextrader_operator.canary_ops import AnalysisMemory, step_canary

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE: dict[str, Any] = {"symbols": ["BTC/USDT:USDT"], "risk": {"maxLeverage": 3}}
FAIL = AnalysisRun(
    at=T0, result="Fail", checks=[AnalysisCheck(name="maxDlqLoss", value=3, threshold=0, result="Fail")]
)

#: name → (canary spec, analysis verdicts fed before the action): one start per phase.
STARTS: dict[str, tuple[dict[str, Any], list[AnalysisRun]]] = {
    "Progressing": ({"weight": 5, "template": {"risk": {"maxLeverage": 2}}}, []),
    "Paused": ({"weight": 5, "paused": True}, []),
    "PausedStep": ({"steps": [{"setWeight": 5}, {"pause": {}}, {"setWeight": 50}]}, []),
    "Degraded": ({"weight": 5, "analysis": {"failureLimit": 2}}, [FAIL]),
    "AbortedBySpec": ({"weight": 5, "abort": True}, []),
    "AbortedByAnalysis": ({"weight": 5, "analysis": {"failureLimit": 1}}, [FAIL]),
    "Promoted": ({"weight": 5, "promote": True}, []),
    "AbortedFlatten": ({"weight": 5, "abort": True, "abortPolicy": "flatten"}, []),
    "AbortedHold": ({"steps": [{"setWeight": 5}], "abort": True, "abortPolicy": "hold"}, []),
}


def _action(name: str) -> CanaryAction:
    return CanaryAction(action=name, weight=25 if name == "set-weight" else None)  # type: ignore[arg-type]


async def _status_after(spec: dict[str, Any], runs: list[AnalysisRun]) -> CanaryStatus:
    status = await _cluster_step(spec, None, T0)
    for i, run in enumerate(runs):
        status = await _cluster_step(spec, status, T0 + timedelta(seconds=i + 1), run)
    return status


async def _cluster_step(
    spec: dict[str, Any], status: CanaryStatus | None, now: datetime, run: AnalysisRun | None = None
) -> CanaryStatus:
    """The operator's code path (no bus: kmock would only echo the KV writes)."""
    tp = TradingPipeline.model_validate(
        {
            "apiVersion": "apextrader.io/v1alpha1",
            "kind": "TradingPipeline",
            "metadata": {"name": "p"},
            "spec": spec,
        }
    )
    if run is None:
        return await step_canary(tp, status or CanaryStatus(), now, None, AnalysisMemory(), analyse=False)
    from apextrader.canary import advance

    return advance(tp.spec.canary, status, now, run)


async def _cluster(spec: dict[str, Any], status: CanaryStatus, action: CanaryAction) -> tuple[Any, ...]:
    cr = {"spec": spec, "status": {"canary": status.model_dump(by_alias=True, mode="json")}}
    try:  # what `apex canary ACTION NAME -n NS` patches
        new_spec = apply_action(cr["spec"], CanaryStatus.model_validate(cr["status"]["canary"]), action).spec
    except ActionError as exc:
        return ("refused", str(exc))
    after = await _cluster_step(new_spec, status, T0 + timedelta(minutes=1))
    canary = new_spec.get("canary")
    return (new_spec, after.phase, track_weights(after.effective_weight, canary is not None), after.message)


async def _local(kv: KV, spec: dict[str, Any], status: CanaryStatus, action: CanaryAction) -> tuple[Any, ...]:
    local = LocalCanary(kv=kv, spec=TradingPipelineSpec.model_validate(spec), status=status)
    await kv.put_json(KV_CANARY_REQUEST, request_json(action))  # what `apex canary ACTION NAME --local` sends
    after = await local.tick(T0 + timedelta(minutes=1))
    if local.last_request_error is not None:
        return ("refused", local.last_request_error)
    new_spec = local.spec.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")
    weights = track_weights(await kv.get_json(KV_CANARY_WEIGHT), local.canary is not None)
    return (new_spec, after.phase, weights, after.message)


@pytest.mark.parametrize("start", list(STARTS))
async def test_every_action_means_the_same_on_both_backends(nc: NatsClient, start: str) -> None:
    js = nc.jetstream()
    kv = KV(await js.create_key_value(bucket="apex-p"))
    canary, runs = STARTS[start]
    spec = {**BASE, "canary": canary}
    status = await _status_after(spec, runs)
    seen = {}
    for name in ACTIONS:
        cluster = await _cluster(spec, status, _action(name))
        local = await _local(kv, spec, status, _action(name))
        assert cluster == local, f"{start} + {name}"
        seen[name] = cluster
    # the table is not vacuous: the actions did what they say
    if "steps" not in canary:
        assert seen["set-weight"][0]["canary"]["weight"] == 25
    else:
        assert seen["set-weight"][0] == "refused"
    assert seen["abort"][1] == "Aborted" and seen["abort"][2]["canary"] == 0
    policy = canary.get("abortPolicy", "drain")
    assert f"abortPolicy {policy}" in seen["abort"][3]  # the status says what happens to the positions
    assert "canary" not in seen["promote"][0] and seen["promote"][2] == {"stable": 100}
    assert seen["pause"][1] in ("Paused", "Aborted", "Promoted")
