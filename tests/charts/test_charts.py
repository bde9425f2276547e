"""Both charts rendered by real helm: lint, Kubernetes 1.34 schemas, the pod security profile, RBAC,
and the generated files (CRD copy, values schema) in step with their sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from apextrader.contracts.pipeline import parse_pipeline
from apextrader_operator.builders.agents import DEFAULT_IMAGE
from tests.charts.charts import (
    K8S_VERSION,
    OPERATOR_CHART,
    PIPELINE_CHART,
    by_kind,
    documents,
    example_values,
    helm_template,
    pod_specs,
    restricted_violations,
)
from tests.fixtures.tools import REPO

CHARTS = [OPERATOR_CHART, PIPELINE_CHART]
RENDERINGS = [(c, v) for c in CHARTS for v in [None, *example_values(c)]]


def _id(case: tuple[Path, Path | None]) -> str:
    chart, values = case
    return f"{chart.name}:{values.name if values else 'defaults'}"


@pytest.mark.parametrize("case", RENDERINGS, ids=[_id(c) for c in RENDERINGS])
def test_helm_lint_strict(helm: str, case: tuple[Path, Path | None]) -> None:
    chart, values = case
    cmd = [helm, "lint", "--strict", str(chart), *(["-f", str(values)] if values else [])]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_chart_has_example_values() -> None:
    for chart in CHARTS:
        assert example_values(chart), f"{chart.name} has no ci/*.yaml example values"


def test_rendered_builtin_kinds_pass_kubernetes_validate_strict(
    helm: str, kubernetes_validate: str, tmp_path: Path
) -> None:
    files = []
    builtin = 0
    for i, (chart, values) in enumerate(RENDERINGS):
        rendered = helm_template(helm, chart, values)
        builtin += sum(
            1
            for d in documents(rendered)
            if "." not in d["apiVersion"].split("/")[0] or d["apiVersion"].split("/")[0].endswith("k8s.io")
        )
        path = tmp_path / f"{i}-{_id((chart, values)).replace(':', '-')}.yaml"
        path.write_text(rendered)
        files.append(str(path))
    out = subprocess.run(
        [kubernetes_validate, "--strict", "-k", K8S_VERSION, *files], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # Every built-in object was really checked (custom kinds only warn: validated elsewhere).
    assert out.stdout.count(" passed for resource ") >= builtin > 10


@pytest.mark.parametrize("case", RENDERINGS, ids=[_id(c) for c in RENDERINGS])
def test_every_pod_meets_restricted(helm: str, case: tuple[Path, Path | None]) -> None:
    docs = documents(helm_template(helm, *case))
    problems = [p for name, pod in pod_specs(docs) for p in restricted_violations(name, pod)]
    assert problems == []


def test_restricted_check_catches_a_root_pod() -> None:
    pod = {"containers": [{"name": "c", "securityContext": {"runAsUser": 0}}], "hostNetwork": True}
    assert len(restricted_violations("Pod/x", pod)) >= 5


def test_operator_deployment(helm: str) -> None:
    docs = documents(helm_template(helm, OPERATOR_CHART))
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["operator", "--namespace", "apex"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["APEX_AGENT_IMAGE"] == DEFAULT_IMAGE
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env


def test_otel_endpoint_and_agent_image_from_values(helm: str) -> None:
    rendered = helm_template(
        helm,
        OPERATOR_CHART,
        None,
        "--set",
        "otel.endpoint=http://otel-collector.observability:4318",
        "--set",
        "agentImage.repository=registry.local/apex,agentImage.tag=canary-7",
    )
    (dep,) = by_kind(documents(rendered), "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert env["APEX_AGENT_IMAGE"] == "registry.local/apex:canary-7"


def test_agents_get_the_otel_settings_the_chart_gives_the_operator(helm: str) -> None:
    """values → the operator Deployment's env → `OperatorConfig.from_env` → every agent Deployment."""
    from apextrader.contracts import load_pipeline
    from apextrader_operator.builders import build_children
    from apextrader_operator.settings import OperatorConfig

    rendered = helm_template(
        helm,
        OPERATOR_CHART,
        None,
        "--set",
        "otel.endpoint=http://otel-collector.observability:4318",
        "--set",
        "otel.resourceAttributes=deployment.environment=prod",
        "--set",
        "agentImage.repository=registry.local/apex,agentImage.tag=canary-7",
    )
    (dep,) = by_kind(documents(rendered), "Deployment")
    operator_env = {
        e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e
    }
    config = OperatorConfig.from_env(operator_env)
    assert config.image == "registry.local/apex:canary-7"
    tp = load_pipeline(REPO / "manifests" / "pipeline.yaml")
    children = build_children(tp, config.image, config.telemetry, key=b"pipeline-key-for-tests-012345678")
    agents = [d for d in children if d["kind"] == "Deployment"]
    assert len(agents) == 10
    for agent in agents:
        container = agent["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert container["image"] == "registry.local/apex:canary-7"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
        assert env["OTEL_SERVICE_NAME"] == agent["metadata"]["name"]
        attributes = dict(a.split("=", 1) for a in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        labels = agent["metadata"]["labels"]
        assert attributes["deployment.environment"] == "prod"
        assert attributes["apextrader.pipeline"] == tp.name
        assert attributes["apextrader.agent"] == labels["app.kubernetes.io/component"]
        assert attributes["apextrader.track"] == labels["apextrader.io/track"]
    # tracing off in the chart: nothing reaches the agents
    off = documents(helm_template(helm, OPERATOR_CHART, None))
    (plain,) = by_kind(off, "Deployment")
    plain_env = {
        e["name"]: e["value"]
        for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    assert OperatorConfig.from_env(plain_env).telemetry.endpoint is None


def _rules(doc: dict[str, object]) -> list[dict[str, list[str]]]:
    rules = doc["rules"]
    assert isinstance(rules, list)
    return rules


def test_rbac_is_least_privilege(helm: str) -> None:
    for args in ([], ["--set", "rbac.scope=cluster"]):
        docs = documents(helm_template(helm, OPERATOR_CHART, None, *args))
        roles = by_kind(docs, "Role") + by_kind(docs, "ClusterRole")
        rules = [r for role in roles for r in _rules(role)]
        assert rules
        for r in rules:
            assert "*" not in r["verbs"] + r["resources"] + r["apiGroups"], r
            if "secrets" in r["resources"]:
                assert not {"list", "watch"} & set(r["verbs"]), "the operator never lists Secrets"
        granted = {(g, res) for r in rules for g in r["apiGroups"] for res in r["resources"]}
        for need in [
            ("apextrader.io", "tradingpipelines"),
            ("apextrader.io", "tradingpipelines/status"),
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("", "services"),
            ("", "configmaps"),
            ("", "serviceaccounts"),
            ("networking.k8s.io", "networkpolicies"),
            ("", "events"),
        ]:
            assert need in granted, need
        # kopf's cluster scanning is off: no access to CRDs or namespaces at all.
        assert not {("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces")} & granted


def _secret_rules(roles: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [
        (r["kind"], r["metadata"].get("namespace"))
        for r in roles
        for rule in _rules(r)
        if "secrets" in rule["resources"]
    ]


def test_cluster_scope_grants_secrets_only_in_the_watched_namespaces(helm: str) -> None:
    args = ["--set", "rbac.scope=cluster", "--set", "watchNamespaces={trading,research}"]
    docs = documents(helm_template(helm, OPERATOR_CHART, None, *args))
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"] == ["operator", "--all-namespaces"]
    roles = by_kind(docs, "Role") + by_kind(docs, "ClusterRole")
    # Secrets: a Role per watched namespace, never in a ClusterRole
    assert sorted(_secret_rules(roles), key=str) == [("Role", "research"), ("Role", "trading")]
    for role in by_kind(docs, "Role"):
        assert [rule["resources"] for rule in _rules(role)] == [["secrets"]]
    docs = documents(
        helm_template(helm, OPERATOR_CHART, None, *args, "--set", "rbac.clusterWideSecrets=true")
    )
    roles = by_kind(docs, "Role") + by_kind(docs, "ClusterRole")
    assert _secret_rules(roles) == [("ClusterRole", None)] and by_kind(docs, "Role") == []


def test_aggregated_user_roles(helm: str) -> None:
    docs = documents(helm_template(helm, OPERATOR_CHART))
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    view, edit = roles["apextrader-view"], roles["apextrader-edit"]
    agg = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k, v in view["metadata"]["labels"].items() if k.startswith(agg) and v == "true"} == {
        agg + "view",
        agg + "edit",
        agg + "admin",
    }
    assert {k for k, v in edit["metadata"]["labels"].items() if k.startswith(agg) and v == "true"} == {
        agg + "edit",
        agg + "admin",
    }
    assert _rules(view) == [
        {
            "apiGroups": ["apextrader.io"],
            "resources": ["tradingpipelines", "tradingpipelines/status"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    # users edit the spec; the status stays the operator's
    assert all("tradingpipelines/status" not in rule["resources"] for rule in _rules(edit))
    docs = documents(helm_template(helm, OPERATOR_CHART, None, "--set", "rbac.aggregatedRoles=false"))
    assert not {"apextrader-view", "apextrader-edit"} & {
        r["metadata"]["name"] for r in by_kind(docs, "ClusterRole")
    }


def test_allowed_images_and_monitoring_namespace_reach_the_operator(helm: str) -> None:
    args = [
        "--set",
        "operator.allowedImages={ghcr.io/acme/,nats}",
        "--set",
        "networkPolicy.monitoringNamespace=monitoring",
    ]
    docs = documents(helm_template(helm, OPERATOR_CHART, None, *args))
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["APEX_ALLOWED_IMAGES"] == "ghcr.io/acme/,nats"
    assert env["APEX_MONITORING_NAMESPACE"] == "monitoring"
    plain = documents(helm_template(helm, OPERATOR_CHART))
    (dep,) = by_kind(plain, "Deployment")
    names = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "APEX_ALLOWED_IMAGES" not in names  # the operator's default: its agent image and nats


def test_namespace_scope_gets_a_role_per_watched_namespace(helm: str) -> None:
    docs = documents(helm_template(helm, OPERATOR_CHART, None, "--set", "watchNamespaces={trading,research}"))
    assert sorted(r["metadata"]["namespace"] for r in by_kind(docs, "Role")) == ["research", "trading"]
    (dep,) = by_kind(docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["operator", "--namespace", "trading", "--namespace", "research"]


def test_helm_test_pod_checks_crd_and_operator(helm: str) -> None:
    docs = documents(helm_template(helm, OPERATOR_CHART))
    (pod,) = by_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    assert "/apis/apextrader.io/v1alpha1" in script and "tradingpipelines" in script
    assert "rel-apextrader-operator.apex.svc:8080/healthz" in script
    compile(script, "helm-test", "exec")  # the embedded check is valid Python


@pytest.mark.parametrize("values", [None, *example_values(PIPELINE_CHART)], ids=lambda v: v and v.name)
def test_rendered_pipeline_is_a_valid_tradingpipeline(helm: str, values: Path | None) -> None:
    (tp,) = by_kind(documents(helm_template(helm, PIPELINE_CHART, values)), "TradingPipeline")
    tp["metadata"].pop("namespace")
    pipeline = parse_pipeline(tp, "rendered")  # the model the operator and agents load
    assert pipeline.metadata.labels["app.kubernetes.io/instance"] == pipeline.name  # type: ignore[attr-defined]


def test_generated_chart_files_are_up_to_date() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sync_charts.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _notes(helm: str, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (rendered through a wrapper, as helm template skips it)."""
    chart = tmp_path / "apextrader"
    shutil.copytree(OPERATOR_CHART, chart)
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include "apextrader/templates/NOTES.txt" . | toJson }}\n'
    )
    rendered = helm_template(helm, chart, None, "--show-only", "templates/notes-probe.yaml", *args)
    notes: str = documents(rendered)[0]["data"]["notes"]
    return notes


def test_notes_tell_what_to_do_next(helm: str, tmp_path: Path) -> None:
    notes = _notes(helm, tmp_path / "a", "--set", "watchNamespaces={trading,research}")
    assert "helm test rel -n apex" in notes
    assert "kubectl -n trading apply -f manifests/pipeline.yaml" in notes
    for ns in ("trading", "research"):
        assert f"kubectl label namespace {ns} pod-security.kubernetes.io/enforce=restricted" in notes
    assert "Observability is off" in notes
    observed = _notes(helm, tmp_path / "b", "-f", str(OPERATOR_CHART / "ci" / "observability-values.yaml"))
    assert "Observability is off" not in observed
