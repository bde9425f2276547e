"""What a CR may make the operator touch (docs/security.md): only objects it created for this CR,
images from the allow-list, exchange credentials only from a labelled Secret into a live track's
execution agent. One `reconcile` at a time on kmock (HTTP) and a real nats-server."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apextrader.local.nats_server import EmbeddedNats
from apextrader_operator.builders.agents import DEFAULT_IMAGE
from apextrader_operator.kube import KubeClient
from apextrader_operator.natsbus import BusPool
from apextrader_operator.policy import CREDENTIALS_LABEL
from apextrader_operator.reconcile import Outcome, PipelineMemory, reconcile
from apextrader_operator.settings import OperatorConfig
from tests.operator.harness import NAMESPACE, kmock_config, kube_api, mark_ready
from tests.operator.test_operator_kopf import NAME, example_cr

pytestmark = pytest.mark.timeout(60)
OURS = {"app.kubernetes.io/managed-by": "apextrader-operator"}


@dataclass
class Api:
    kube: KubeClient
    nats: EmbeddedNats
    pool: BusPool
    memory: PipelineMemory

    async def reconcile(self, config: OperatorConfig | None = None) -> Outcome:
        body = await self.kube.get("TradingPipeline", NAMESPACE, NAME)
        assert body is not None
        config = config or kmock_config(image="apextrader:test", nats_url=self.nats.url)
        outcome = await reconcile(body, kube=self.kube, pool=self.pool, memory=self.memory, config=config)
        if outcome.status_patch:
            await self.kube.patch(
                "TradingPipeline", NAMESPACE, NAME, {"status": outcome.status_patch}, "status"
            )
        return outcome

    async def names(self, kind: str) -> set[str]:
        return {o["metadata"]["name"] for o in await self.kube.list(kind, NAMESPACE)}

    async def everything(self) -> dict[str, set[str]]:
        kinds = ("Deployment", "StatefulSet", "Service", "ConfigMap", "ServiceAccount", "NetworkPolicy")
        return {kind: await self.names(kind) for kind in kinds}


@pytest.fixture
async def api(tmp_path: Path, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with kube_api(tmp_path) as (_, kube):
        pool = BusPool()
        try:
            yield Api(kube, nats_server, pool, PipelineMemory())
        finally:
            await pool.close()


def condition(outcome: Outcome, kind: str) -> Any:
    return next(c for c in outcome.status.conditions if c.type == kind)


def foreign(kind: str, name: str, **meta: Any) -> dict[str, Any]:
    api_version = {"Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1"}.get(kind, "v1")
    doc: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE, **meta},
    }
    if kind in ("ConfigMap", "Secret"):
        doc["data"] = {"owner": "c29tZW9uZSBlbHNl"}
    if kind == "Deployment":
        doc["spec"] = {"replicas": 1, "selector": {"matchLabels": {"app": "x"}}, "template": {}}
    return doc


async def _until_agents(api: Api) -> Outcome:
    await api.reconcile()
    await mark_ready(api.kube, "StatefulSet", f"{NAME}-nats")
    return await api.reconcile()


@pytest.mark.parametrize(
    "labels_and_owner",
    [
        {},  # someone's ConfigMap that happens to have the child's name
        {"labels": OURS},  # our label copied, but no owner reference to this CR
        {"labels": OURS, "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "other"}]},
    ],
)
async def test_a_foreign_object_is_untouched_and_nothing_else_is_written(
    api: Api, labels_and_owner: dict[str, Any]
) -> None:
    planted = await api.kube.create(foreign("ConfigMap", f"{NAME}-config", **copy.deepcopy(labels_and_owner)))
    await api.kube.create(example_cr())
    outcome = await api.reconcile()
    ready = condition(outcome, "Ready")
    assert (ready.status, ready.reason) == ("False", "Conflict")
    assert f"ConfigMap/{NAME}-config" in ready.message
    assert outcome.changes == []
    held = await api.kube.get("ConfigMap", NAMESPACE, f"{NAME}-config")
    assert held == planted  # not patched, not adopted
    # no other child: not the bus, not the pipeline key
    assert await api.everything() == {
        "Deployment": set(),
        "StatefulSet": set(),
        "Service": set(),
        "ConfigMap": {f"{NAME}-config"},
        "ServiceAccount": set(),
        "NetworkPolicy": set(),
    }
    assert await api.kube.get("Secret", NAMESPACE, f"{NAME}-nats-key") is None
    assert ("Warning", "Conflict", ready.message) in outcome.events


async def test_the_conflict_clears_once_the_foreign_object_is_gone(api: Api) -> None:
    await api.kube.create(foreign("Deployment", f"{NAME}-execution-canary"))
    await api.kube.create(example_cr())
    await mark_ready(api.kube, "StatefulSet", f"{NAME}-nats")  # nothing to mark yet: still a conflict
    assert condition(await api.reconcile(), "Ready").reason == "Conflict"
    await api.kube.delete("Deployment", NAMESPACE, f"{NAME}-execution-canary")
    outcome = await _until_agents(api)
    assert condition(outcome, "Ready").reason == "NotReady"
    assert f"{NAME}-execution-canary" in await api.names("Deployment")


async def test_a_foreign_key_secret_is_never_read_or_rewritten(api: Api) -> None:
    planted = await api.kube.create(foreign("Secret", f"{NAME}-nats-key"))
    await api.kube.create(example_cr())
    outcome = await api.reconcile()
    ready = condition(outcome, "Ready")
    assert ready.reason == "Conflict" and f"Secret/{NAME}-nats-key" in ready.message
    assert await api.kube.get("Secret", NAMESPACE, f"{NAME}-nats-key") == planted
    assert await api.names("StatefulSet") == set()


async def test_pruning_deletes_only_what_this_cr_owns(api: Api) -> None:
    """A Deployment with the pipeline's labels but not created for this CR survives the prune."""
    labels = {**OURS, "app.kubernetes.io/instance": NAME}
    await api.kube.create(foreign("Deployment", f"{NAME}-lookalike", labels=labels))
    await api.kube.create(example_cr())
    await _until_agents(api)
    assert {f"{NAME}-lookalike", f"{NAME}-execution-canary"} <= await api.names("Deployment")
    cr = await api.kube.get("TradingPipeline", NAMESPACE, NAME)
    assert cr is not None
    spec = copy.deepcopy(cr["spec"])
    del spec["canary"]  # the canary Deployments are ours and go; the look-alike is not ours and stays
    await api.kube.patch("TradingPipeline", NAMESPACE, NAME, {"spec": {"canary": None}})
    outcome = await api.reconcile()
    assert f"deleted Deployment/{NAME}-execution-canary" in outcome.changes
    names = await api.names("Deployment")
    assert f"{NAME}-lookalike" in names and f"{NAME}-execution-canary" not in names


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image": {"repository": "evil.example/miner", "tag": "1"}}, "spec.image"),
        ({"image": {"repository": "ghcr.io/apextrader/apextrader-evil", "tag": "1"}}, "spec.image"),
        ({"bus": {"managed": {"image": "evil.example/nats:2.10"}}}, "spec.bus.managed.image"),
        (
            {"canary": {"weight": 5, "template": {"image": {"repository": "evil.example/x"}}}},
            "spec.canary.template.image",
        ),
    ],
)
async def test_an_image_outside_the_allow_list_is_invalid_and_changes_nothing(
    api: Api, change: dict[str, Any], field: str
) -> None:
    await api.kube.create(example_cr(**change))
    config = kmock_config(image=DEFAULT_IMAGE, nats_url=api.nats.url)
    outcome = await api.reconcile(config)
    invalid = condition(outcome, "InvalidSpec")
    assert invalid.status == "True" and invalid.message.startswith(f"{field}: image ")
    assert outcome.status.phase == "Invalid" and outcome.changes == []
    assert all(not names for names in (await api.everything()).values())


async def test_allowed_images_and_digests_of_them_pass(api: Api) -> None:
    digest = "sha256:" + "a" * 64
    cr = example_cr(image={"repository": "registry.example/team/apextrader", "tag": f"0.2.0@{digest}"})
    cr["spec"]["bus"] = {"managed": {"image": f"nats@{digest}"}}
    await api.kube.create(cr)
    config = kmock_config(
        image="apextrader:test",
        nats_url=api.nats.url,
        allowed_images=("registry.example/team/", "nats:2.10-alpine"),
    )
    outcome = await api.reconcile(config)
    assert condition(outcome, "InvalidSpec").status == "False"
    assert await api.names("StatefulSet") == {f"{NAME}-nats"}


def live_cr(secret: str = "exchange-keys") -> dict[str, Any]:
    return example_cr(mode="live", execution={"credentialsSecret": secret})


async def test_live_credentials_need_the_label(api: Api) -> None:
    await api.kube.create(foreign("Secret", "exchange-keys"))  # not labelled as exchange credentials
    await api.kube.create(live_cr())
    outcome = await api.reconcile()
    invalid = condition(outcome, "InvalidSpec")
    assert invalid.status == "True"
    assert (
        invalid.message
        == f'spec.execution.credentialsSecret: Secret/exchange-keys is not labelled {CREDENTIALS_LABEL}: "true"'
    )
    assert all(not names for names in (await api.everything()).values())


async def test_a_missing_credentials_secret_is_named(api: Api) -> None:
    await api.kube.create(live_cr("nowhere"))
    outcome = await api.reconcile()
    assert (
        "spec.execution.credentialsSecret: Secret/nowhere does not exist"
        in condition(outcome, "InvalidSpec").message
    )


async def test_labelled_credentials_reach_only_the_live_execution_agents(api: Api) -> None:
    await api.kube.create(foreign("Secret", "exchange-keys", labels={CREDENTIALS_LABEL: "true"}))
    await api.kube.create(live_cr())
    await _until_agents(api)
    with_keys = {
        d["metadata"]["name"]
        for d in await api.kube.list("Deployment", NAMESPACE)
        if "envFrom" in d["spec"]["template"]["spec"]["containers"][0]
    }
    assert with_keys == {f"{NAME}-execution-stable", f"{NAME}-execution-canary"}


async def test_the_canary_template_may_not_name_an_unlabelled_secret(api: Api) -> None:
    await api.kube.create(foreign("Secret", "exchange-keys", labels={CREDENTIALS_LABEL: "true"}))
    await api.kube.create(foreign("Secret", "someone-elses-keys"))
    cr = live_cr()
    cr["spec"]["canary"]["template"]["execution"] = {"credentialsSecret": "someone-elses-keys"}
    await api.kube.create(cr)
    message = condition(await api.reconcile(), "InvalidSpec").message
    assert message.startswith("spec.canary.template.execution.credentialsSecret: Secret/someone-elses-keys")
    assert all(not names for names in (await api.everything()).values())


async def test_a_lasting_conflict_is_one_event_not_one_per_tick(api: Api) -> None:
    await api.kube.create(foreign("ConfigMap", f"{NAME}-config"))
    await api.kube.create(example_cr())
    first, second = await api.reconcile(), await api.reconcile()
    assert [e[1] for e in first.events] == ["Conflict"] and second.events == []
    assert condition(second, "Ready").reason == "Conflict"
