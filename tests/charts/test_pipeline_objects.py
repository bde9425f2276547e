"""What the operator renders for a pipeline (its builders plus the security builders) fits the
platform: valid Kubernetes 1.34 objects, "restricted" pods, and agents the PodMonitor scrapes."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from apextrader.contracts import TradingPipeline, load_pipeline
from apextrader.contracts.names import AGENT_IDS
from apextrader_operator.builders import Telemetry, build_children
from tests.charts.charts import pod_specs, restricted_violations
from tests.fixtures.tools import REPO
from tests.manifests.observability import OBSERVABILITY


@pytest.fixture(scope="module")
def children() -> list[dict[str, Any]]:
    tp: TradingPipeline = load_pipeline(REPO / "manifests" / "pipeline.yaml")
    telemetry = Telemetry("http://otel-collector.observability:4318", "deployment.environment=prod")
    return build_children(tp, telemetry=telemetry, key=b"pipeline-key-for-tests-012345678")


def test_every_object_validates_against_kubernetes_1_34(children: list[dict[str, Any]]) -> None:
    for doc in children:
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_every_pod_is_restricted(children: list[dict[str, Any]]) -> None:
    pods = list(pod_specs(children))
    assert len(pods) >= len(AGENT_IDS)
    assert [p for name, pod in pods for p in restricted_violations(name, pod)] == []


def _selected(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        ok = ok and labels.get(expr["key"]) in expr["values"]
    return ok


def test_podmonitor_scrapes_every_agent_and_nothing_else(children: list[dict[str, Any]]) -> None:
    monitor = yaml.safe_load((OBSERVABILITY / "podmonitor.yaml").read_text())["spec"]
    port = monitor["podMetricsEndpoints"][0]["port"]
    scraped = set()
    for doc in children:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        template = doc["spec"]["template"]
        if _selected(monitor["selector"], template["metadata"]["labels"]):
            ports = {
                p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]
            }
            assert ports.get(port) == 8080, doc["metadata"]["name"]
            scraped.add(template["metadata"]["labels"]["app.kubernetes.io/component"])
            # the relabelled labels exist on the pod
            assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "btc-perp"
            assert template["metadata"]["labels"]["apextrader.io/track"] in {"shared", "stable", "canary"}
    assert scraped == set(AGENT_IDS)


def test_agent_network_policies_admit_the_scrape_and_reach_the_bus(children: list[dict[str, Any]]) -> None:
    policies = {
        d["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component"): d
        for d in children
        if d["kind"] == "NetworkPolicy"
    }
    nats_policy = policies["nats"]
    nats_peers = nats_policy["spec"]["ingress"][0]["from"]
    for agent in AGENT_IDS:
        spec = policies[agent]["spec"]
        assert {"port": 8080, "protocol": "TCP"} in spec["ingress"][0]["ports"]
        # the bus admits what the agent's egress targets (this pipeline's pods)
        agent_labels = {"app.kubernetes.io/instance": "btc-perp", "app.kubernetes.io/component": agent}
        assert any(
            _selected(peer.get("podSelector", {}), agent_labels)
            for peer in nats_peers
            if "namespaceSelector" not in peer
        )
        assert {p["port"] for r in spec["egress"] for p in r["ports"]} == {53, 4222, 4318}
