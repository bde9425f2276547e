"""Alert rules (promtool check + unit tests), dashboards (structure, PromQL through promtool, metric
names from docs/conventions.md §3), and the scrape objects' relabelling."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from apextrader.contracts.canary_spec import CanaryAnalysis
from tests.charts.charts import OPERATOR_CHART, by_kind, documents, helm_template
from tests.manifests.observability import (
    DASHBOARDS,
    METRICS,
    OBSERVABILITY,
    RULES_FILE,
    TARGET_LABELS,
    alert_rules,
    dashboard_exprs,
    load_dashboards,
    metric_names,
    rules_file_from_exprs,
)


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=OBSERVABILITY)


def test_promtool_check_rules(promtool: str) -> None:
    out = _promtool(promtool, "check", "rules", str(RULES_FILE))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    tests = sorted((OBSERVABILITY / "tests").glob("*.yaml"))
    assert tests
    out = _promtool(promtool, "test", "rules", *map(str, tests))
    assert out.returncode == 0, out.stdout + out.stderr


def test_unit_tests_catch_a_loosened_threshold(promtool: str, tmp_path: Path) -> None:
    # Raise the latency threshold to 1 s: the unit test that expects the canary alert must fail.
    (tmp_path / "rules").mkdir()
    loosened = RULES_FILE.read_text().replace(") > 100\n", ") > 1000\n")
    assert loosened != RULES_FILE.read_text()
    (tmp_path / "rules" / RULES_FILE.name).write_text(loosened)
    (tmp_path / "tests").mkdir()
    test_file = tmp_path / "tests" / "alerts_test.yaml"
    test_file.write_text((OBSERVABILITY / "tests" / "alerts_test.yaml").read_text())
    out = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert out.returncode != 0 and "ApexBusLatencyP99High" in out.stdout + out.stderr


def test_one_alert_per_go_no_go_criterion() -> None:
    criteria = {r["labels"]["criterion"] for r in alert_rules()}
    analysis_keys = {
        f.alias or name
        for name, f in CanaryAnalysis.model_fields.items()
        if name not in {"interval", "failure_limit", "prometheus_url"}
    }
    assert analysis_keys == {
        "maxAvgSlippageBps",
        "maxMarginViolations",
        "maxDlqLoss",
        "maxBusP99Ms",
        "minExpectancy",
    }
    assert analysis_keys | {"canary", "availability"} == criteria


def test_alerts_aggregate_by_pipeline_and_link_the_runbook() -> None:
    runbook = (OBSERVABILITY.parents[1] / "docs" / "runbook.md").read_text().lower()
    for rule in alert_rules():
        expr = rule["expr"]
        # Aggregations keep `pipeline` (a bare selector such as `up == 0` keeps every label).
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            assert "pipeline" in group, f"{rule['alert']} aggregates the pipeline label away"
        assert re.search(r"\b(sum|min|max|avg|count)\b(?! by)", expr) is None, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert'].lower()}" in runbook, f"docs/runbook.md has no section {rule['alert']}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash: dict[str, Any] = yaml.safe_load(path.read_text())
    assert dash["uid"] == path.stem and dash["title"].startswith("ApexTrader / ")
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "pipeline"} <= names
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert 'pipeline="$pipeline"' in t["expr"], f"{p['title']}: not filtered by pipeline"


def test_every_dashboard_expr_passes_promtool(promtool: str, tmp_path: Path) -> None:
    exprs = [e for d in load_dashboards() for e in dashboard_exprs(d)]
    assert len(exprs) > 30
    rules = rules_file_from_exprs(exprs, tmp_path / "dashboards.rules.yaml")
    out = _promtool(promtool, "check", "rules", str(rules))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in out.stdout


def test_promtool_check_catches_a_broken_expr(promtool: str, tmp_path: Path) -> None:
    rules = rules_file_from_exprs([("x", "sum by (track (rate(apex_pnl[5m]))")], tmp_path / "bad.yaml")
    assert _promtool(promtool, "check", "rules", str(rules)).returncode != 0


def test_every_metric_and_label_read_is_a_conventions_metric() -> None:
    exprs = [("rule " + r["alert"], r["expr"]) for r in alert_rules()]
    exprs += [e for d in load_dashboards() for e in dashboard_exprs(d)]
    read = set()
    for where, expr in exprs:
        names = metric_names(expr)
        assert names <= set(METRICS), f"{where}: unknown metric {names - set(METRICS)}"
        read |= names
        allowed = set().union(*(METRICS[n] for n in names)) | TARGET_LABELS if names else TARGET_LABELS
        for label in re.findall(r"\b([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"", expr):
            assert label in allowed, f"{where}: label {label} is not on {sorted(names)}"
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",") if x.strip()):
                assert label in allowed, f"{where}: groups by {label}, which {sorted(names)} lack"
    # The dashboards and alerts together cover every metric of docs/conventions.md §3.
    assert read == set(METRICS)


def test_podmonitor_relabels_instance_to_pipeline() -> None:
    pm = yaml.safe_load((OBSERVABILITY / "podmonitor.yaml").read_text())
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    relabel = {r["targetLabel"]: r.get("sourceLabels", [r.get("replacement")])[0] for r in ep["relabelings"]}
    assert relabel["pipeline"] == "__meta_kubernetes_pod_label_app_kubernetes_io_instance"
    assert relabel["job"] == "apextrader-agents"  # what ApexAgentDown selects
    assert ep["port"] == "http" and ep["path"] == "/metrics" and ep["honorLabels"] is True
    scrape = yaml.safe_load((OBSERVABILITY / "prometheus-scrape-config.yaml").read_text())
    agents = next(j for j in scrape["scrape_configs"] if j["job_name"] == "apextrader-agents")
    plain = {
        r["target_label"]: r["source_labels"][0] for r in agents["relabel_configs"] if "target_label" in r
    }
    assert plain == {k: v for k, v in relabel.items() if k != "job"}


def test_chart_renders_the_same_rules_monitors_and_dashboards(helm: str) -> None:
    values = OPERATOR_CHART / "ci" / "observability-values.yaml"
    docs = documents(helm_template(helm, OPERATOR_CHART, values))
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]
    (pm,) = by_kind(docs, "PodMonitor")
    src = yaml.safe_load((OBSERVABILITY / "podmonitor.yaml").read_text())["spec"]
    assert pm["spec"]["selector"] == src["selector"]
    assert pm["spec"]["podMetricsEndpoints"][0]["relabelings"] == src["podMetricsEndpoints"][0]["relabelings"]
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["apex"]}
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    maps = {
        key: text
        for cm in by_kind(docs, "ConfigMap")
        for key, text in cm["data"].items()
        if key.endswith(".json")
    }
    assert maps == {p.name: p.read_text().rstrip("\n") for p in DASHBOARDS}
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"


def test_kustomization_builds(tmp_path: Path) -> None:
    from tests.fixtures.tools import require_tool

    kubectl = require_tool("kubectl")
    out = subprocess.run([kubectl, "kustomize", str(OBSERVABILITY)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(out.stdout))
    assert kinds == ["ConfigMap"] * len(DASHBOARDS) + ["PodMonitor", "PrometheusRule", "ServiceMonitor"]


def test_conventions_metrics_match_the_bus_registry() -> None:
    """The names and labels the rules and dashboards read are the ones the agents really export."""
    from prometheus_client.metrics import MetricWrapperBase

    from apextrader.bus import metrics

    # prometheus-client keeps a metric's full name and label names only in (stable) private fields.
    declared = {
        obj._name + ("_total" if obj._type == "counter" else ""): set(obj._labelnames)
        for obj in vars(metrics).values()
        if isinstance(obj, MetricWrapperBase)
    }
    assert declared == METRICS
