"""Builders: YAML snapshots (regenerate on purpose with APEX_UPDATE_SNAPSHOTS=1) plus structural checks
and validation of every object against the real Kubernetes 1.34 OpenAPI schemas."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from apextrader.contracts import TradingPipeline, load_pipeline, parse_pipeline
from apextrader_operator.builders import build_children

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).parent / "snapshots"
IMAGE = "registry.example/apextrader:test"


def example(namespace: str = "trading") -> TradingPipeline:
    tp = load_pipeline(ROOT / "manifests" / "pipeline.yaml")
    doc = tp.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["metadata"]["namespace"] = namespace
    return parse_pipeline(doc)


def variant(**changes: Any) -> TradingPipeline:
    doc = example().model_dump(mode="json", by_alias=True, exclude_none=True)
    for path, value in changes.items():
        node = doc["spec"]
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return parse_pipeline(doc)


def external_live() -> TradingPipeline:
    return variant(
        bus={"url": "nats://nats.infra:4222"},
        mode="live",
        execution__credentialsSecret="exchange-keys",
        canary=None,
        image={"repository": "ghcr.io/acme/apextrader", "tag": "1.2.3", "pullPolicy": "Always"},
    )


CASES = {"btc-perp": example, "external-live": external_live}


@pytest.mark.parametrize("case", sorted(CASES))
def test_snapshot(case: str) -> None:
    rendered = yaml.safe_dump_all(build_children(CASES[case](), IMAGE), sort_keys=False, width=120)
    path = SNAPSHOTS / f"{case}.yaml"
    if os.environ.get("APEX_UPDATE_SNAPSHOTS") == "1":
        path.write_text(rendered)
    assert path.exists(), f"no snapshot {path.name}: run with APEX_UPDATE_SNAPSHOTS=1 once and review it"
    assert rendered == path.read_text(), f"{path.name} changed: review, then APEX_UPDATE_SNAPSHOTS=1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_valid_kubernetes_1_34(case: str) -> None:
    for obj in build_children(CASES[case](), IMAGE):
        kubernetes_validate.validate(copy.deepcopy(obj), "1.34.0", strict=True)


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_agents_tracks_and_names() -> None:
    deps = by_kind(build_children(example(), IMAGE), "Deployment")
    expected = {
        "btc-perp-market-scanner",
        "btc-perp-feature-engineer",
        "btc-perp-event-watcher",
        "btc-perp-backtester",
    }
    for agent in ("strategy-builder", "risk-manager", "execution"):
        expected |= {f"btc-perp-{agent}-stable", f"btc-perp-{agent}-canary"}
    assert set(deps) == expected
    no_canary = by_kind(build_children(variant(canary=None), IMAGE), "Deployment")
    assert {n for n in no_canary if n.endswith("-canary")} == set()
    assert "btc-perp-risk-manager-stable" in no_canary


def test_pod_contract_probes_security_env() -> None:
    objs = build_children(example(), IMAGE)
    services = by_kind(objs, "Service")
    for name, dep in by_kind(objs, "Deployment").items():
        pod = dep["spec"]["template"]
        c = pod["spec"]["containers"][0]
        track = dep["metadata"]["labels"]["apextrader.io/track"]
        agent = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        assert c["command"] == ["apex", "agent", agent, "--track", track]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["APEX_NATS_URL"] == "nats://btc-perp-nats.trading.svc:4222"
        assert env["APEX_PIPELINE_FILE"] == "/etc/apextrader/pipeline.yaml"
        assert (env["APEX_AGENT"], env["APEX_TRACK"], env["APEX_HTTP_PORT"]) == (agent, track, "8080")
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"]
        assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        svc = services[name]
        assert svc["spec"]["selector"] == selector
        assert svc["spec"]["ports"] == [
            {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
        ]
        labels = dep["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "btc-perp"
        assert labels["app.kubernetes.io/managed-by"] == "apextrader-operator"
        assert "envFrom" not in c  # no credentials in paper mode without a secret


def test_every_agent_has_a_network_policy_before_its_deployments() -> None:
    objs = build_children(example(), IMAGE)
    order = [(o["kind"], o["metadata"]["name"]) for o in objs]
    for agent in ("market-scanner", "risk-manager", "execution"):
        policy = order.index(("NetworkPolicy", f"btc-perp-{agent}"))
        deployments = [
            i for i, (k, n) in enumerate(order) if k == "Deployment" and n.startswith(f"btc-perp-{agent}")
        ]
        assert deployments and policy < min(deployments)


def test_resources_come_from_the_spec() -> None:
    deps = by_kind(build_children(example(), IMAGE), "Deployment")
    res = deps["btc-perp-backtester"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res == {"requests": {"cpu": "200m", "memory": "192Mi"}, "limits": {"memory": "384Mi"}}


def test_external_bus_live_credentials_only_via_secret() -> None:
    objs = build_children(external_live(), IMAGE)
    assert not [o for o in objs if o["kind"] == "StatefulSet"]
    assert "btc-perp-nats" not in by_kind(objs, "Service")
    for name, dep in by_kind(objs, "Deployment").items():
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["image"] == "ghcr.io/acme/apextrader:1.2.3" and c["imagePullPolicy"] == "Always"
        assert {e["name"]: e.get("value") for e in c["env"]}["APEX_NATS_URL"] == "nats://nats.infra:4222"
        if name == "btc-perp-execution-stable":
            assert c["envFrom"] == [{"secretRef": {"name": "exchange-keys"}}]
        else:
            assert "envFrom" not in c


def test_managed_bus_statefulset_with_jetstream_storage() -> None:
    objs = build_children(example(), IMAGE)
    sts = by_kind(objs, "StatefulSet")["btc-perp-nats"]
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    conf = by_kind(objs, "ConfigMap")["btc-perp-nats-config"]["data"]["nats.conf"]
    assert "jetstream {" in conf and "store_dir: /data/jetstream" in conf
    svc = by_kind(objs, "Service")["btc-perp-nats"]
    assert svc["spec"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"client": 4222, "monitor": 8222}
    three = by_kind(build_children(variant(bus={"managed": {"replicas": 3}}), IMAGE), "ConfigMap")
    assert (
        "btc-perp-nats-2.btc-perp-nats.trading.svc:6222" in three["btc-perp-nats-config"]["data"]["nats.conf"]
    )


def test_config_map_holds_the_cr_and_weight_edits_do_not_roll_pods() -> None:
    objs = build_children(example(), IMAGE)
    doc = yaml.safe_load(by_kind(objs, "ConfigMap")["btc-perp-config"]["data"]["pipeline.yaml"])
    assert doc["kind"] == "TradingPipeline" and doc["metadata"] == {
        "name": "btc-perp",
        "namespace": "trading",
    }
    assert parse_pipeline(doc).spec == example().spec

    def hashes(tp: TradingPipeline) -> dict[str, str]:
        deps = by_kind(build_children(tp, IMAGE), "Deployment")
        return {
            n: d["spec"]["template"]["metadata"]["annotations"]["apextrader.io/config-hash"]
            for n, d in deps.items()
        }

    base = hashes(example())
    assert hashes(variant(canary__weight=50)) == base
    changed = hashes(variant(canary__template={"risk": {"maxLeverage": 2}}))
    assert {n for n in base if base[n] != changed[n]} == {
        f"btc-perp-{a}-canary" for a in ("strategy-builder", "risk-manager", "execution")
    }
