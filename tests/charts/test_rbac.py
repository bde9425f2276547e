"""The chart grants exactly what the operator uses (docs/security.md, "Permissions").

The operator (the real kopf handlers) runs a whole pipeline life on kmock: create, bus and agents
ready, a foreign object under a child's name (a Conflict Event), drift on a child of every kind
(patched back), a canary weight edit, the canary removed (its Deployments and Services pruned), a live track
with exchange credentials, deletion through the finalizer. The emulator records every request the
operator sends as RBAC authorizes it (API group, resource, verb). Then:

- every recorded call is granted by the rendered chart (namespace and cluster scope);
- every granted verb was recorded, or is in UNRECORDABLE with the reason a fake API cannot show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from apextrader.local.nats_server import EmbeddedNats
from apextrader_operator.policy import CREDENTIALS_LABEL
from tests.charts.charts import OPERATOR_CHART, by_kind, documents, helm_template
from tests.operator.harness import NAMESPACE, eventually, kmock_config, kube_api, mark_ready, running_operator
from tests.operator.test_operator_kopf import NAME, example_cr

Call = tuple[str, str, str]
#: Granted, but no request of the operator shows it (the API server checks it on another request).
UNRECORDABLE: dict[Call, str] = {
    ("apextrader.io", "tradingpipelines/finalizers", "update"): (
        "OwnerReferencesPermissionEnforcement: creating a child whose ownerReference sets "
        "blockOwnerDeletion needs update on the owner's finalizers"
    ),
}
pytestmark = pytest.mark.timeout(120)


async def _kinds(kube: Any, kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in await kube.list(kind, NAMESPACE)}


async def _life(tmp: Path, nats: EmbeddedNats) -> set[Call]:
    async with kube_api(tmp) as (emulator, kube):
        config = kmock_config(image="apextrader:test", nats_url=nats.url, metrics_urls=lambda tp: [])
        await kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "exchange-keys",
                    "namespace": NAMESPACE,
                    "labels": {CREDENTIALS_LABEL: "true"},
                },
                "stringData": {"BINANCE_API_KEY": "k"},
            }
        )
        # someone's ConfigMap under a child's name: Ready=False Conflict, posted as an Event
        await kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": FOREIGN, "data": {}})
        async with running_operator(config):
            # a 3-server managed bus (its PodDisruptionBudget), streams R1 on the one test server
            bus = {"managed": {"replicas": 3}, "streamReplicas": 1}
            await kube.create(
                example_cr(mode="live", execution={"credentialsSecret": "exchange-keys"}, bus=bus)
            )

            async def conflict() -> bool:
                tp = await kube.get("TradingPipeline", NAMESPACE, NAME) or {}
                return any(c["reason"] == "Conflict" for c in (tp.get("status") or {}).get("conditions", []))

            await eventually(conflict, what="Ready=False Conflict")
            await kube.delete("ConfigMap", NAMESPACE, FOREIGN["name"])
            await eventually(lambda: _kinds(kube, "StatefulSet"), what="NATS StatefulSet")
            await mark_ready(kube, "StatefulSet", f"{NAME}-nats", 3)

            async def canary_agents() -> bool:
                return f"{NAME}-execution-canary" in await _kinds(kube, "Deployment")

            await eventually(canary_agents, what="agents")
            for obj in await kube.list("Deployment", NAMESPACE):
                await mark_ready(kube, "Deployment", obj["metadata"]["name"], obj["spec"]["replicas"])
            await kube.patch("TradingPipeline", NAMESPACE, NAME, {"spec": {"canary": {"weight": 20}}})
            await _drift_is_repaired(kube)
            await kube.patch("TradingPipeline", NAMESPACE, NAME, {"spec": {"canary": None}})

            async def pruned() -> bool:
                return f"{NAME}-execution-canary" not in await _kinds(kube, "Deployment")

            await eventually(pruned, what="canary Deployments pruned")
            await kube.delete("TradingPipeline", NAMESPACE, NAME)

            async def gone() -> bool:
                return await kube.get("TradingPipeline", NAMESPACE, NAME) is None

            await eventually(gone, what="the CR released by the finalizer")
        return set(getattr(emulator, "calls", set()))


FOREIGN = {"name": f"{NAME}-config", "namespace": NAMESPACE}
DRIFT = [
    ("Deployment", f"{NAME}-risk-manager-stable"),
    ("StatefulSet", f"{NAME}-nats"),
    ("Service", f"{NAME}-risk-manager-stable"),
    ("ServiceAccount", f"{NAME}-agents"),
    ("NetworkPolicy", f"{NAME}-risk-manager"),
    ("Secret", f"{NAME}-nats-auth"),
    ("PodDisruptionBudget", f"{NAME}-nats"),
]


async def _drift_is_repaired(kube: Any) -> None:
    """Someone edits a child of each kind: the operator patches it back (the `patch` verbs)."""
    for kind, name in DRIFT:
        await kube.patch(
            kind, NAMESPACE, name, {"metadata": {"labels": {"app.kubernetes.io/component": "x"}}}
        )

    async def repaired() -> bool:
        for kind, name in DRIFT:
            obj = await kube.get(kind, NAMESPACE, name) or {}
            if obj["metadata"]["labels"]["app.kubernetes.io/component"] == "x":
                return False
        return True

    await eventually(repaired, what="drift repaired")


def granted(docs: Iterable[dict[str, Any]]) -> set[Call]:
    """What the chart's Roles and ClusterRoles bound to the operator's ServiceAccount allow."""
    docs = list(docs)
    bound = {
        (b["roleRef"]["kind"], b["roleRef"]["name"])
        for b in by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding")
        if any(s.get("kind") == "ServiceAccount" for s in b["subjects"])
    }
    out: set[Call] = set()
    for role in by_kind(docs, "Role") + by_kind(docs, "ClusterRole"):
        if (role["kind"], role["metadata"]["name"]) not in bound:
            continue  # e.g. the aggregated user roles
        for rule in role["rules"]:
            out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> set[Call]:
    import asyncio

    tmp = tmp_path_factory.mktemp("rbac")
    with EmbeddedNats(tmp / "nats").start() as server:
        return asyncio.run(_life(tmp, server))


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "rbac.scope=cluster"],
        ["--set", "rbac.scope=cluster", "--set", "rbac.clusterWideSecrets=true"],
    ],
)
def test_the_chart_grants_every_call_the_operator_makes_and_nothing_else(
    helm: str, recorded: set[Call], values: list[str]
) -> None:
    rules = granted(documents(helm_template(helm, OPERATOR_CHART, None, *values)))
    assert recorded, "nothing recorded"
    assert recorded - rules == set(), "calls the chart does not grant"
    unused = rules - recorded - set(UNRECORDABLE)
    assert unused == set(), "granted but never used"


def test_the_record_sees_the_operators_writes(recorded: set[Call]) -> None:
    """The recorder itself: a change to it that loses calls would make the comparison vacuous."""
    for call in [
        ("apps", "deployments", "create"),
        ("apps", "deployments", "delete"),
        ("", "secrets", "get"),
        ("apextrader.io", "tradingpipelines", "watch"),
        ("apextrader.io", "tradingpipelines/status", "patch"),
    ]:
        assert call in recorded, call
    assert ("", "secrets", "list") not in recorded
