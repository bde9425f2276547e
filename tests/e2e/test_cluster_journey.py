"""The user journey against a real kube-apiserver: helm install, kubectl apply, the operator under the
chart's own RBAC, Pod Security `restricted`, the canary, a restart, validation by the server itself,
helm upgrade/uninstall and garbage collection.

On the local control plane (scripts/test-cluster) the harness plays the two pods no container runtime
runs here: the operator (`apex operator` with the chart's ServiceAccount token) and the NATS pod (a
real nats-server with the nats.conf and users the operator rendered). With APEX_CLUSTER_KUBECONFIG
(kind, `make e2e`) both run in the cluster and the checks that read the bus directly are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import nats
import pytest
import yaml

from apextrader.bus.kv import KV
from apextrader.bus.topology import KV_CANARY_WEIGHT, declare, kv_bucket
from apextrader.contracts import load_pipeline
from apextrader.contracts.pipeline import merge_patch
from apextrader.local.nats_server import free_port
from apextrader_operator.builders.security import OPERATOR_USER, key_secret_name, operator_password
from tests.fixtures.cluster import REPO, ClusterAccess
from tests.fixtures.journey import (
    CRD,
    OPERATOR_NS,
    PIPELINE_NS,
    RELEASE,
    REPO_MANIFEST,
    OperatorProcess,
    Tools,
    conditions,
    eventually,
    labelled_children,
    secret_data,
)
from tests.fixtures.nats_pod import nats_pod

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
NAME = "btc-perp"
CHART = str(REPO / "charts" / "apextrader")


@dataclass
class Journey:
    tools: Tools
    operator: OperatorProcess | None
    nats_url: str | None
    password: str | None = None

    def tp(self, name: str = NAME) -> dict[str, Any]:
        return self.tools.get("tp", name)

    def operator_password(self) -> str:
        """The operator's NATS password, from the pipeline key Secret (kept: the Secret goes with the CR)."""
        if self.password is None:
            key = secret_data(self.tools, key_secret_name(NAME), "key")
            self.password = operator_password(load_pipeline(REPO_MANIFEST), key)
        return self.password

    async def bus(self) -> nats.NATS:
        assert self.nats_url is not None
        password = self.operator_password()
        return await nats.connect(self.nats_url, user=OPERATOR_USER, password=password, allow_reconnect=False)

    async def kv(self, key: str) -> Any:
        nc = await self.bus()
        try:
            return await (await KV.open(nc.jetstream(), kv_bucket(NAME))).get_json(key)
        finally:
            await nc.close()


def _helm_install(tools: Tools, *extra: str) -> None:
    tools.helm(
        "upgrade", "--install", RELEASE, CHART, "-n", OPERATOR_NS, "--create-namespace", "--wait",
        "--timeout", "3m", "--set", f"watchNamespaces={{{PIPELINE_NS}}}", *extra,
    )  # fmt: skip


def _pipeline_namespace(tools: Tools) -> None:
    tools.kubectl("create", "namespace", PIPELINE_NS)
    tools.kubectl(
        "label", "namespace", PIPELINE_NS, "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip


def _ready(journey: Journey) -> bool:
    tp = journey.tp()
    ready = conditions(tp).get("Ready", {}).get("status") == "True"
    return ready and tp["status"].get("observedGeneration") == tp["metadata"]["generation"]


@pytest.fixture(scope="module")
def journey(cluster: ClusterAccess) -> Iterator[Journey]:
    tools = Tools(cluster)
    _pipeline_namespace(tools)  # the chart puts the operator's Role into it: it must exist first
    # On kind the operator's pod runs the image `make kind-up` loaded; here the harness plays it.
    _helm_install(tools, *([] if cluster.local else ["--set", "image.pullPolicy=Never"]))
    tools.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    with contextlib.ExitStack() as stack:
        operator = None
        nats_url = None
        if cluster.local:
            port = free_port()
            nats_url = f"nats://127.0.0.1:{port}"
            operator = OperatorProcess(tools, cluster.dir, nats_url)
            operator.start()
            stack.callback(operator.stop)
        tools.kubectl("apply", "-n", PIPELINE_NS, "-f", str(REPO_MANIFEST))
        if cluster.local:
            # Play the NATS pod once the operator has rendered its config and users.
            conf = eventually(
                "the NATS ConfigMap",
                lambda: tools.get("configmap", f"{NAME}-nats-config")["data"]["nats.conf"],
            )
            auth = secret_data(tools, f"{NAME}-nats-auth", "auth.conf").decode()
            stack.enter_context(nats_pod(cluster.dir / "nats-pod", conf, auth, port))
        journey = Journey(tools, operator, nats_url)
        try:
            eventually("the pipeline Ready", lambda: _ready(journey), timeout=180)
        except AssertionError:
            if operator is not None:
                print(operator.log()[-3000:])
            print(json.dumps(journey.tp().get("status"), indent=1))
            print(tools.kubectl("get", "deploy,sts,pods,events", "-n", PIPELINE_NS))
            raise
        yield journey
        if operator is not None:
            assert operator.forbidden() == [], "the chart's RBAC refused the operator:\n" + "\n".join(
                operator.forbidden()
            )


def test_get_tp_shows_the_printer_columns(journey: Journey) -> None:
    table = journey.tools.kubectl("get", "tp", "-n", PIPELINE_NS)
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "MODE", "CANARY%", "APPLIED%", "STEP", "READY", "AGE"]
    assert row.split()[:4] == [NAME, "Running", "paper", "5"]


def test_every_pod_is_admitted_under_restricted_and_becomes_ready(journey: Journey) -> None:
    tools = journey.tools
    pods = json.loads(tools.kubectl("get", "pods", "-n", PIPELINE_NS, "-o", "json"))["items"]
    deployments = json.loads(tools.kubectl("get", "deployments", "-n", PIPELINE_NS, "-o", "json"))["items"]
    assert len(deployments) >= 9 and len(pods) >= len(deployments) + 1  # + the NATS pod
    for deploy in deployments:
        assert deploy["status"].get("availableReplicas") == deploy["spec"]["replicas"], deploy["metadata"][
            "name"
        ]
    events = tools.kubectl("get", "events", "-n", PIPELINE_NS, "--field-selector", "reason=FailedCreate")
    assert "violates PodSecurity" not in events


async def test_the_bus_holds_every_stream_consumer_and_the_kv_bucket(journey: Journey) -> None:
    if journey.nats_url is None:
        pytest.skip("the bus runs inside the cluster (kind): no direct access from the test")
    topology = declare(load_pipeline(REPO_MANIFEST).spec, NAME)
    nc = await journey.bus()
    try:
        js = nc.jetstream()
        for stream in topology.streams:
            info = await js.stream_info(stream.name)
            assert info.config.max_bytes == stream.max_bytes
            durables = {c.name for c in await js.consumers_info(stream.name)}
            assert {c.durable for c in topology.consumers if c.stream == stream.name} <= durables
        assert await (await KV.open(js, kv_bucket(NAME))).get_json(KV_CANARY_WEIGHT) == 5
    finally:
        await nc.close()


INVALID = [
    ("out of range", {"spec": {"canary": {"weight": 101}}}, "spec.canary.weight"),
    ("unknown field", {"spec": {"risk": {"maxLeverag": 3}}}, "maxLeverag"),
    ("mutually exclusive", {"spec": {"bus": {"url": "nats://x:4222"}}}, "give managed or url, not both"),
    ("replicas where one is allowed", {"spec": {"agents": {"execution": {"replicas": 2}}}}, "replicas"),
]


@pytest.mark.parametrize(("case", "patch", "named"), INVALID, ids=[c[0] for c in INVALID])
def test_the_api_server_refuses_invalid_specs_naming_the_field(
    journey: Journey, case: str, patch: dict[str, Any], named: str
) -> None:
    before = journey.tp()
    # `kubectl apply` of the edited file, as a user would (strict field validation by default).
    doc = merge_patch(yaml.safe_load(REPO_MANIFEST.read_text()), patch)
    message = journey.tools.kubectl_fails("apply", "-n", PIPELINE_NS, "-f", "-", stdin=yaml.safe_dump(doc))
    assert named in message, message
    after = journey.tp()
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]


def test_a_name_too_long_is_refused(journey: Journey) -> None:
    doc = yaml.safe_load(REPO_MANIFEST.read_text())
    doc["metadata"]["name"] = "x" * 40
    message = journey.tools.kubectl_fails("apply", "-n", PIPELINE_NS, "-f", "-", stdin=yaml.safe_dump(doc))
    assert "metadata.name" in message and "39" in message, message


def test_what_only_the_operator_can_judge_is_invalidspec_and_changes_no_child(journey: Journey) -> None:
    if journey.operator is None:
        pytest.skip("needs the local operator")
    tools = journey.tools
    before = labelled_children(tools, NAME)
    # The API server cannot do the volume arithmetic: 6 streams x 1Gi do not fit 2Gi.
    tools.kubectl("patch", "tp", NAME, "-n", PIPELINE_NS, "--type", "merge",
                  "-p", json.dumps({"spec": {"bus": {"limits": {"maxBytes": "1Gi"}}}}))  # fmt: skip
    cond = eventually(
        "InvalidSpec",
        lambda: conditions(journey.tp()).get("InvalidSpec", {}).get("status") == "True" and journey.tp(),
    )
    assert "bus.managed.storage" in conditions(cond)["InvalidSpec"]["message"]
    assert conditions(cond)["Ready"]["reason"] == "InvalidSpec"
    assert labelled_children(tools, NAME) == before
    tools.kubectl("patch", "tp", NAME, "-n", PIPELINE_NS, "--type", "merge",
                  "-p", json.dumps({"spec": {"bus": {"limits": {"maxBytes": "256Mi"}}}}))  # fmt: skip
    eventually("Ready again", lambda: _ready(journey))
    assert labelled_children(tools, NAME) == before


def test_canary_edits_reach_kv_and_status(journey: Journey) -> None:
    tools = journey.tools
    tools.kubectl("patch", "tp", NAME, "-n", PIPELINE_NS, "--type", "merge",
                  "-p", json.dumps({"spec": {"canary": {"weight": 10}}}))  # fmt: skip
    eventually("effective weight 10", lambda: journey.tp()["status"]["canary"]["effectiveWeight"] == 10)
    if journey.nats_url is not None:
        eventually("KV weight 10", lambda: _sync(journey.kv(KV_CANARY_WEIGHT)) == 10)
    tools.apex("canary", "set-weight", NAME, "25", "-n", PIPELINE_NS)
    eventually("effective weight 25", lambda: journey.tp()["status"]["canary"]["effectiveWeight"] == 25)
    tools.apex("canary", "pause", NAME, "-n", PIPELINE_NS)
    eventually("paused", lambda: journey.tp()["status"]["canary"]["phase"] == "Paused")
    tools.apex("canary", "resume", NAME, "-n", PIPELINE_NS)
    eventually("progressing", lambda: journey.tp()["status"]["canary"]["phase"] != "Paused")
    status = tools.apex("canary", "status", NAME, "-n", PIPELINE_NS)
    assert "25" in status


def _canary(journey: Journey) -> dict[str, Any]:
    canary: dict[str, Any] = (journey.tp().get("status") or {}).get("canary") or {}
    return canary


def test_abort_stops_the_canary_until_cleared(journey: Journey) -> None:
    tools = journey.tools
    tools.apex("canary", "abort", NAME, "-n", PIPELINE_NS)
    eventually(
        "aborted",
        lambda: _canary(journey).get("phase") == "Aborted" and _canary(journey)["effectiveWeight"] == 0,
    )
    if journey.nats_url is not None:
        eventually("KV weight 0", lambda: _sync(journey.kv(KV_CANARY_WEIGHT)) == 0)
    tools.apex("canary", "abort", NAME, "-n", PIPELINE_NS, "--clear")
    eventually("abort cleared", lambda: _canary(journey).get("phase") not in (None, "Aborted"))


def test_a_stepped_canary_progresses_on_a_fast_clock_and_promote_folds_it(journey: Journey) -> None:
    tools = journey.tools
    steps = [{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 20}, {"pause": {}}]
    patch = {"spec": {"canary": {"weight": None, "steps": steps}}}
    tools.kubectl("patch", "tp", NAME, "-n", PIPELINE_NS, "--type", "merge", "-p", json.dumps(patch))
    eventually("the first step", lambda: _canary(journey).get("effectiveWeight") == 10)
    eventually("past the 2 s pause", lambda: _canary(journey).get("effectiveWeight") == 20, timeout=60)
    assert _canary(journey)["phase"] == "Paused"  # the last, indefinite pause holds
    canary_deploys = "-l", "apextrader.io/track=canary"
    assert tools.kubectl("get", "deployments", "-n", PIPELINE_NS, *canary_deploys, "-o", "name").strip()
    tools.apex("canary", "promote", NAME, "-n", PIPELINE_NS)
    eventually("the template folded into the spec", lambda: "canary" not in journey.tp()["spec"])
    assert journey.tp()["spec"]["strategies"]["breakout"]["lookback"] == 30
    eventually(
        "the canary track's Deployments pruned",
        lambda: (
            not tools.kubectl("get", "deployments", "-n", PIPELINE_NS, *canary_deploys, "-o", "name").strip()
        ),
    )
    eventually("Ready after the promote", lambda: _ready(journey))


def _quiet_for(journey: Journey, seconds: float) -> bool:
    version = journey.tp()["metadata"]["resourceVersion"]
    time.sleep(seconds)
    return bool(journey.tp()["metadata"]["resourceVersion"] == version)


def _sync(coro: Any) -> Any:
    return asyncio.run(coro)


def test_an_operator_restart_recreates_nothing_and_writes_nothing(journey: Journey) -> None:
    if journey.operator is None:
        pytest.skip("needs the local operator")
    tools = journey.tools
    eventually("Ready", lambda: _ready(journey))
    # Stop it at rest, not while it still converges the previous test's promote (that work would
    # rightly be finished by the next operator): no write to the CR for three 1 s ticks.
    eventually("the operator at rest", lambda: _quiet_for(journey, 3.0), timeout=60)
    journey.operator.stop()
    before = labelled_children(tools, NAME)
    cr_version = journey.tp()["metadata"]["resourceVersion"]
    journey.operator.start()
    operator = journey.operator
    eventually(
        "the restarted operator's resume handler",
        lambda: "Handler 'on_change' succeeded" in operator.log().split(f"==== start {operator.starts}")[-1],
        timeout=60,
    )
    time.sleep(5)  # and several timer ticks at the 1 s interval
    assert labelled_children(tools, NAME) == before
    assert journey.tp()["metadata"]["resourceVersion"] == cr_version


def test_helm_upgrade_delete_gc_and_uninstall_keep_what_they_should(journey: Journey) -> None:
    tools = journey.tools
    _helm_install(tools, "--set", "operator.logLevel=DEBUG")
    assert tools.exists("tp", NAME)
    children = labelled_children(tools, NAME)
    assert children
    if journey.nats_url is not None:
        assert _sync(journey.kv("halt")) in (None, False)
    tools.kubectl("delete", "tp", NAME, "-n", PIPELINE_NS, "--wait=false")
    try:
        eventually("the TradingPipeline gone (its finalizer released)", lambda: not tools.exists("tp", NAME))
    except AssertionError:
        print(json.dumps(journey.tp()["metadata"], indent=1))
        raise
    if journey.nats_url is not None:
        eventually("halt written", lambda: _sync(journey.kv("halt")) is True)
    eventually(
        "the garbage collector removed every child", lambda: labelled_children(tools, NAME) == {}, timeout=120
    )
    if journey.operator is not None:
        journey.operator.stop()
    tools.kubectl("apply", "-n", PIPELINE_NS, "-f", str(REPO_MANIFEST))
    tools.helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait")
    assert tools.exists("crd", CRD, ns=OPERATOR_NS)
    assert tools.exists("tp", NAME)
