"""Operator benchmarks on the real control plane (scripts/test-cluster), printed next to the kmock
figures of test_bench_operator.py. Smoke-sized in `make test` (2 pipelines in 2 namespaces); with
APEX_BENCH_FULL=1 (`make bench`) 20 pipelines in 4 namespaces. Numbers are printed, never asserted.

- create → Ready: `kubectl apply` to the Ready condition with observedGeneration, the Deployments
  really rolled out by the controller-manager, scheduled, and made Ready by kwok;
- weight edit → status: a `spec.canary.weight` patch to `status.canary.effectiveWeight`;
- N pipelines converging: all applied at once, until every one is Ready;
- operator RSS once they are.

The pipelines use an external bus (one unauthenticated nats-server on loopback), so no NATS pod
has to be played per pipeline; the operator runs with the chart's ServiceAccount token as in the
journey (tests/e2e/test_cluster_journey.py).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import yaml

from apextrader.local.nats_server import EmbeddedNats
from tests.fixtures.cluster import REPO, ClusterAccess
from tests.fixtures.journey import OPERATOR_NS, RELEASE, OperatorProcess, Tools, conditions

FULL = os.environ.get("APEX_BENCH_FULL") == "1"
NAMESPACES = [f"bench-{i}" for i in range(4 if FULL else 2)]
PIPELINES = 20 if FULL else 2
pytestmark = [pytest.mark.bench, pytest.mark.slow, pytest.mark.timeout(1800 if FULL else 600)]


def _doc(name: str, ns: str, nats_url: str) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "manifests" / "pipeline.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": ns}
    doc["spec"]["bus"] = {"url": nats_url}
    return copy.deepcopy(doc)


def _ready(tp: dict[str, Any]) -> bool:
    status = tp.get("status") or {}
    ok = conditions(tp).get("Ready", {}).get("status") == "True"
    return ok and status.get("observedGeneration") == tp["metadata"]["generation"]


def _all_tps(tools: Tools) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(tools.kubectl("get", "tp", "-A", "-o", "json"))["items"]
    return [i for i in items if i["metadata"]["namespace"] in NAMESPACES]


def _wait(what: str, probe: Any, timeout: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout:.0f} s")


@pytest.fixture(scope="module")
def bench(
    cluster: ClusterAccess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Tools, str, OperatorProcess]]:
    if not cluster.local:
        pytest.skip("the cluster benchmark plays the operator locally (the local control plane)")
    tools = Tools(cluster)
    for ns in NAMESPACES:
        tools.kubectl("create", "namespace", ns)
    watch = "{" + ",".join(NAMESPACES) + "}"
    tools.helm("upgrade", "--install", RELEASE, str(REPO / "charts" / "apextrader"), "-n", OPERATOR_NS,
               "--create-namespace", "--wait", "--set", f"watchNamespaces={watch}")  # fmt: skip
    workdir = tmp_path_factory.mktemp("bench-cluster")
    server = EmbeddedNats(workdir / "nats").start()
    operator = OperatorProcess(tools, workdir, nats_url="", interval=1.0)
    operator.start()
    try:
        yield tools, server.url, operator
    finally:
        operator.stop()
        server.stop()
        for ns in NAMESPACES:
            tools.kubectl("delete", "namespace", ns, "--wait=false")


def test_bench_operator_on_a_real_api_server(bench: tuple[Tools, str, OperatorProcess]) -> None:
    tools, nats_url, operator = bench
    first = _doc("bench-first", NAMESPACES[0], nats_url)
    tools.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(first))
    create_ready = _wait(
        "first pipeline Ready", lambda: _ready(tools.get("tp", "bench-first", NAMESPACES[0]))
    )
    edits = []
    for weight in (10, 20, 30):
        patch = json.dumps({"spec": {"canary": {"weight": weight}}})
        start = time.monotonic()
        tools.kubectl("patch", "tp", "bench-first", "-n", NAMESPACES[0], "--type", "merge", "-p", patch)
        _wait(f"effective weight {weight}",
              lambda w=weight: (tools.get("tp", "bench-first", NAMESPACES[0]).get("status") or {})
              .get("canary", {}).get("effectiveWeight") == w)  # fmt: skip
        edits.append(time.monotonic() - start)
    docs = [_doc(f"bench-{i:02d}", NAMESPACES[i % len(NAMESPACES)], nats_url) for i in range(PIPELINES)]
    start = time.monotonic()
    tools.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    converge = _wait(
        f"{PIPELINES} pipelines Ready",
        lambda: sum(_ready(tp) for tp in _all_tps(tools)) == PIPELINES + 1,
        timeout=1200 if FULL else 300,
    )
    assert operator.proc is not None
    rss = psutil.Process(operator.proc.pid).memory_info().rss / 2**20
    print(
        f"\nreal kube-apiserver (kwok nodes, {len(NAMESPACES)} namespaces):"
        f"\n  create → Ready (Deployments rolled out and Ready): {create_ready:.2f} s   [kmock: test_bench_operator]"
        f"\n  weight edit → status: median {statistics.median(edits):.2f} s of {len(edits)}"
        f"\n  {PIPELINES} pipelines applied at once → all Ready: {converge:.1f} s"
        f"\n  operator RSS with {PIPELINES + 1} pipelines: {rss:.0f} MB (goal < 100 MB)"
    )
    assert operator.forbidden() == []
