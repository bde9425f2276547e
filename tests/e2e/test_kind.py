"""End to end on a real cluster (kind): helm install the operator, apply the example pipeline, wait for
Ready, move the canary weight with the `apex` CLI and see the agents' applied weight in the status.

Runs only when a cluster is reachable (`make kind-up`, then `make e2e`); it drives `kubectl`, `helm`
and `apex` as a user would and never calls project internals.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = os.environ.get("APEX_E2E_NAMESPACE", "apex-e2e")
CONTEXT = os.environ.get("APEX_E2E_CONTEXT", "kind-apextrader")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _tool(name: str) -> str | None:
    local = ROOT / ".tools" / "bin" / name
    return str(local) if local.exists() else shutil.which(name)


def _cluster_problem() -> str | None:
    kubectl = _tool("kubectl")
    if kubectl is None:
        return "kubectl not found (make tools)"
    probe = subprocess.run(
        [kubectl, "--context", CONTEXT, "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=15
    )
    if probe.returncode != 0:
        return f"no Kubernetes cluster reachable at context {CONTEXT} (make kind-up needs Docker and kind)"
    if _tool("helm") is None:
        return "helm not found (make tools)"
    return None


PROBLEM = _cluster_problem()
pytestmark.append(pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or ""))


def run(*args: str, check: bool = True) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def kubectl(*args: str) -> str:
    return run(str(_tool("kubectl")), "--context", CONTEXT, "-n", NAMESPACE, *args)


def apex(*args: str) -> str:
    return run(sys.executable, "-c", "from apextrader.cli import main; main()", *args)


def wait_for(jsonpath: str, want: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = kubectl("get", "tp", "btc-perp", "-o", f"jsonpath={jsonpath}")
        if last == want:
            return
        time.sleep(2)
    raise AssertionError(f"{jsonpath} = {last!r}, wanted {want!r}")


def test_install_apply_ready_and_move_the_canary() -> None:
    run(str(_tool("kubectl")), "--context", CONTEXT, "create", "namespace", NAMESPACE, check=False)
    run(
        str(_tool("helm")), "--kube-context", CONTEXT, "upgrade", "--install", "apextrader",
        str(ROOT / "charts" / "apextrader"), "-n", NAMESPACE, "--wait", "--timeout", "5m",
        "--set", "image.pullPolicy=Never",
    )  # fmt: skip
    kubectl("apply", "-f", str(ROOT / "manifests" / "pipeline.yaml"))
    kubectl("wait", "--for=condition=Ready", "tp/btc-perp", "--timeout=600s")
    wait_for("{.status.canary.appliedWeight.canary}", "5")
    apex("canary", "set-weight", "btc-perp", "10", "-n", NAMESPACE, "--context", CONTEXT)
    wait_for("{.status.canary.effectiveWeight}", "10", timeout=60)
    wait_for("{.status.canary.appliedWeight.canary}", "10", timeout=60)
    status = json.loads(kubectl("get", "tp", "btc-perp", "-o", "json"))["status"]
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert "phase" in apex("canary", "status", "btc-perp", "-n", NAMESPACE, "--context", CONTEXT)
