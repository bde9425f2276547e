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
from apextrader_operator.builders import Telemetry, build_agent_children, build_children

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).parent / "snapshots"
IMAGE = "registry.example/apextrader:test"
#: A fixed pipeline key, so the snapshots (Secrets, hashes) are stable.
KEY = b"snapshot-pipeline-key-0123456789"
TELEMETRY = Telemetry("http://otel-collector.observability:4318", "deployment.environment=test")


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


def render(case: str) -> list[dict[str, Any]]:
    """The demo with tracing on, the external-bus case with it off (both shapes in the snapshots)."""
    telemetry = TELEMETRY if case == "btc-perp" else Telemetry()
    return build_children(CASES[case](), IMAGE, telemetry, key=KEY)


@pytest.mark.parametrize("case", sorted(CASES))
def test_snapshot(case: str) -> None:
    rendered = yaml.safe_dump_all(render(case), sort_keys=False, width=120)
    path = SNAPSHOTS / f"{case}.yaml"
    if os.environ.get("APEX_UPDATE_SNAPSHOTS") == "1":
        path.write_text(rendered)
    assert path.exists(), f"no snapshot {path.name}: run with APEX_UPDATE_SNAPSHOTS=1 once and review it"
    assert rendered == path.read_text(), f"{path.name} changed: review, then APEX_UPDATE_SNAPSHOTS=1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_valid_kubernetes_1_34(case: str) -> None:
    for obj in render(case):
        kubernetes_validate.validate(copy.deepcopy(obj), "1.34.0", strict=True)


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_agents_tracks_and_names() -> None:
    deps = by_kind(build_children(example(), IMAGE, key=KEY), "Deployment")
    expected = {
        "btc-perp-market-scanner",
        "btc-perp-feature-engineer",
        "btc-perp-event-watcher",
        "btc-perp-backtester",
    }
    for agent in ("strategy-builder", "risk-manager", "execution"):
        expected |= {f"btc-perp-{agent}-stable", f"btc-perp-{agent}-canary"}
    assert set(deps) == expected
    no_canary = by_kind(build_children(variant(canary=None), IMAGE, key=KEY), "Deployment")
    assert {n for n in no_canary if n.endswith("-canary")} == set()
    assert "btc-perp-risk-manager-stable" in no_canary


def test_pod_contract_probes_security_env() -> None:
    objs = build_children(example(), IMAGE, key=KEY)
    services = by_kind(objs, "Service")
    for name, dep in by_kind(objs, "Deployment").items():
        pod = dep["spec"]["template"]
        c = pod["spec"]["containers"][0]
        track = dep["metadata"]["labels"]["apextrader.io/track"]
        agent = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        assert c["command"] == ["apex", "agent", agent, "--track", track]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["APEX_NATS_URL"] == "nats://btc-perp-nats.trading.svc:4222"  # no credentials in it
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in c["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert refs == {
            var: {"name": f"{name}-nats", "key": var} for var in ("APEX_NATS_USER", "APEX_NATS_PASSWORD")
        }
        assert env["APEX_ENSURE_TOPOLOGY"] == "false"  # the operator provisions; agents may not
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
    objs = build_children(example(), IMAGE, key=KEY)
    order = [(o["kind"], o["metadata"]["name"]) for o in objs]
    for agent in ("market-scanner", "risk-manager", "execution"):
        policy = order.index(("NetworkPolicy", f"btc-perp-{agent}"))
        deployments = [
            i for i, (k, n) in enumerate(order) if k == "Deployment" and n.startswith(f"btc-perp-{agent}")
        ]
        assert deployments and policy < min(deployments)


def test_resources_come_from_the_spec() -> None:
    deps = by_kind(build_children(example(), IMAGE, key=KEY), "Deployment")
    res = deps["btc-perp-backtester"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res == {"requests": {"cpu": "200m", "memory": "192Mi"}, "limits": {"memory": "384Mi"}}


def test_external_bus_live_credentials_only_via_secret() -> None:
    objs = build_children(external_live(), IMAGE, key=KEY)
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
    objs = build_children(example(), IMAGE, key=KEY)
    sts = by_kind(objs, "StatefulSet")["btc-perp-nats"]
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    conf = by_kind(objs, "ConfigMap")["btc-perp-nats-config"]["data"]["nats.conf"]
    assert "jetstream {" in conf and "store_dir: /data/jetstream" in conf
    svc = by_kind(objs, "Service")["btc-perp-nats"]
    assert svc["spec"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"client": 4222, "monitor": 8222}
    three = by_kind(build_children(variant(bus={"managed": {"replicas": 3}}), IMAGE, key=KEY), "ConfigMap")
    assert (
        "btc-perp-nats-2.btc-perp-nats.trading.svc:6222" in three["btc-perp-nats-config"]["data"]["nats.conf"]
    )


def test_config_map_holds_the_cr_and_weight_edits_do_not_roll_pods() -> None:
    objs = build_children(example(), IMAGE, key=KEY)
    doc = yaml.safe_load(by_kind(objs, "ConfigMap")["btc-perp-config"]["data"]["pipeline.yaml"])
    assert doc["kind"] == "TradingPipeline" and doc["metadata"] == {
        "name": "btc-perp",
        "namespace": "trading",
    }
    assert parse_pipeline(doc).spec == example().spec

    def hashes(tp: TradingPipeline) -> dict[str, str]:
        deps = by_kind(build_children(tp, IMAGE, key=KEY), "Deployment")
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


def test_managed_bus_runs_with_users_and_agents_log_in_as_their_own() -> None:
    from apextrader_operator.builders.security import nats_authorization, secret_values, user_password

    objs = build_children(example(), IMAGE, key=KEY)
    secrets = by_kind(objs, "Secret")
    auth = secret_values(secrets["btc-perp-nats-auth"])["auth.conf"]
    assert auth == nats_authorization(example(), KEY)
    conf = by_kind(objs, "ConfigMap")["btc-perp-nats-config"]["data"]["nats.conf"]
    assert conf.rstrip().endswith('include "auth.conf"')
    pod = by_kind(objs, "StatefulSet")["btc-perp-nats"]["spec"]["template"]
    sources = pod["spec"]["volumes"][0]["projected"]["sources"]
    assert sources[0] == {"configMap": {"name": "btc-perp-nats-config"}}
    assert sources[1]["secret"] == {
        "name": "btc-perp-nats-auth",
        "items": [{"key": "auth.conf", "path": "auth.conf"}],
    }
    assert "apextrader.io/auth-hash" in pod["metadata"]["annotations"]
    # one credentials Secret per agent and every track it may run, applied before its pods
    order = [(o["kind"], o["metadata"]["name"]) for o in objs]
    for name in by_kind(objs, "Deployment"):
        values = secret_values(secrets[f"{name}-nats"])
        user = values["APEX_NATS_USER"]
        assert name == f"btc-perp-{user}".removesuffix("-shared")
        assert values["APEX_NATS_PASSWORD"] == user_password(KEY, "btc-perp", user)
        assert order.index(("Secret", f"{name}-nats")) < order.index(("Deployment", name))
    assert len(secrets) == 1 + 4 + 3 * 2


def test_same_key_same_objects_new_key_rolls_nats_and_agents_only() -> None:
    def hashes(key: bytes) -> dict[str, str]:
        objs = build_children(example(), IMAGE, key=key)
        out = {}
        for name, obj in {**by_kind(objs, "Deployment"), **by_kind(objs, "StatefulSet")}.items():
            out.update(
                {f"{name}|{k}": v for k, v in obj["spec"]["template"]["metadata"]["annotations"].items()}
            )
        return out

    assert build_children(example(), IMAGE, key=KEY) == build_children(example(), IMAGE, key=KEY)
    before, after = hashes(KEY), hashes(b"another-pipeline-key-0123456789!")
    changed = {k.split("|", 1)[1] for k in before if before[k] != after[k]}
    assert changed == {"apextrader.io/auth-hash", "apextrader.io/credentials-hash"}
    assert sum(k.endswith("credentials-hash") for k in before) == 10
    with pytest.raises(ValueError, match="pipeline key"):
        build_children(example(), IMAGE)


def test_external_bus_has_no_users_and_agents_use_its_url_as_given() -> None:
    objs = build_children(external_live(), IMAGE)  # no key needed
    assert by_kind(objs, "Secret") == {}
    for dep in by_kind(objs, "Deployment").values():
        env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        assert not [e for e in env if e["name"] in ("APEX_NATS_USER", "APEX_NATS_PASSWORD")]
        assert "apextrader.io/credentials-hash" not in dep["spec"]["template"]["metadata"]["annotations"]


def test_agents_export_traces_to_the_operators_collector() -> None:
    from apextrader_operator.builders.security import OTLP_HTTP_PORT

    objs = build_children(example(), IMAGE, TELEMETRY, key=KEY)
    for name, dep in by_kind(objs, "Deployment").items():
        env = [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]]
        values = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        labels = dep["metadata"]["labels"]
        assert values["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
        assert values["OTEL_SERVICE_NAME"] == name
        attributes = dict(a.split("=", 1) for a in values["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        assert attributes["deployment.environment"] == "test"  # the chart's extras
        assert attributes["apextrader.pipeline"] == "btc-perp"
        assert attributes["apextrader.agent"] == labels["app.kubernetes.io/component"]
        assert attributes["apextrader.track"] == labels["apextrader.io/track"]
        assert attributes["k8s.namespace.name"] == "trading"
        # $(APEX_INSTANCE) expands only when that variable is defined earlier in the list
        assert attributes["k8s.pod.name"] == "$(APEX_INSTANCE)"
        assert env.index("APEX_INSTANCE") < env.index("OTEL_RESOURCE_ATTRIBUTES")
    policies = by_kind(objs, "NetworkPolicy")
    assert OTLP_HTTP_PORT in {
        p["port"] for r in policies["btc-perp-execution"]["spec"]["egress"] for p in r["ports"]
    }
    # tracing off: no OTEL_* at all
    off = by_kind(build_children(example(), IMAGE, key=KEY), "Deployment")
    for dep in off.values():
        assert not [
            e
            for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"].startswith("OTEL_")
        ]


def test_credentials_only_for_a_live_tracks_execution_agent() -> None:
    doc = yaml.safe_load((ROOT / "manifests" / "pipeline.yaml").read_text())
    doc["spec"]["execution"] = {"credentialsSecret": "exchange-keys"}  # paper mode: never mounted
    paper = parse_pipeline(doc)
    doc["spec"]["mode"] = "live"
    live = parse_pipeline(doc)

    def mounted(tp: Any) -> set[str]:
        return {
            o["metadata"]["name"]
            for o in build_agent_children(tp, "img:1", key=b"k")
            if o["kind"] == "Deployment" and "envFrom" in o["spec"]["template"]["spec"]["containers"][0]
        }

    assert mounted(paper) == set()
    assert mounted(live) == {"btc-perp-execution-stable", "btc-perp-execution-canary"}


def test_every_agent_container_has_memory_requests_and_limits_by_default() -> None:
    doc = yaml.safe_load((ROOT / "manifests" / "pipeline.yaml").read_text())
    doc["spec"]["agents"] = {"risk-manager": {"resources": {"requests": {"memory": "1Gi"}}}}
    for obj in build_agent_children(parse_pipeline(doc), "img:1", key=b"k"):
        if obj["kind"] != "Deployment":
            continue
        res = obj["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"]["cpu"], obj["metadata"]["name"]
        if obj["metadata"]["labels"]["app.kubernetes.io/component"] == "risk-manager":
            # the spec's memory is kept as given, no default limit below its request is added
            assert res == {"requests": {"cpu": "50m", "memory": "1Gi"}}
        else:
            assert res["requests"]["memory"] and res["limits"]["memory"], obj["metadata"]["name"]


def test_the_nats_container_has_requests_and_a_memory_limit() -> None:
    tp = load_pipeline(ROOT / "manifests" / "pipeline.yaml")
    (sts,) = [o for o in build_children(tp, key=b"k") if o["kind"] == "StatefulSet"]
    res = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
