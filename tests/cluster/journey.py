"""What the journey tests do as a user: kubectl, helm and apex against the cluster; and what the
harness plays where this machine runs no containers: the operator's pod (a local `apex operator`
with the chart's ServiceAccount token, so it has exactly the chart's RBAC) and the NATS pod.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apextrader.local.nats_server import free_port
from tests.cluster.fixtures import REPO, ClusterAccess
from tests.platform.conftest import require_tool

RELEASE = "apextrader"
OPERATOR_NS = "apextrader"
PIPELINE_NS = "apex-pipelines"
CRD = "tradingpipelines.apextrader.io"


@dataclass
class Tools:
    cluster: ClusterAccess
    kubectl_bin: str = field(default_factory=lambda: require_tool("kubectl"))
    helm_bin: str = field(default_factory=lambda: require_tool("helm"))

    def run(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 180) -> str:
        out = subprocess.run(
            list(args), input=stdin, capture_output=True, text=True, timeout=timeout, env=self.cluster.env()
        )
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out.stdout + (out.stderr if not check else "")

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        return self.run(self.kubectl_bin, *args, check=check, stdin=stdin)

    def kubectl_fails(self, *args: str, stdin: str | None = None) -> str:
        """Run kubectl expecting a refusal; return its message."""
        out = subprocess.run(
            [self.kubectl_bin, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=self.cluster.env(),
        )
        assert out.returncode != 0, f"kubectl {' '.join(args)} was accepted:\n{out.stdout}"
        return out.stderr

    def helm(self, *args: str) -> str:
        return self.run(self.helm_bin, *args, timeout=300)

    def apex(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "apextrader.cli", *args)

    def get(self, kind: str, name: str, ns: str = PIPELINE_NS) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.kubectl("get", kind, name, "-n", ns, "-o", "json"))
        return result

    def exists(self, kind: str, name: str, ns: str = PIPELINE_NS) -> bool:
        out = self.kubectl("get", kind, name, "-n", ns, "--ignore-not-found", "-o", "name")
        return bool(out.strip())


def eventually(what: str, probe: Callable[[], Any], timeout: float = 90, every: float = 0.5) -> Any:
    """Poll `probe` until it returns a truthy value; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (AssertionError, subprocess.SubprocessError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


class OperatorProcess:
    """The operator as its Deployment would run it, but as a local process.

    Arguments and environment come from the Deployment the chart installed; it authenticates with a
    token of the chart's ServiceAccount from the TokenRequest API, so every call it makes is judged
    by the chart's RBAC. Only the ports and the bus address change (no pod network here).
    """

    def __init__(self, tools: Tools, workdir: Path, nats_url: str, interval: float = 1.0) -> None:
        self.tools, self.workdir, self.nats_url, self.interval = tools, workdir, nats_url, interval
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "operator.log"
        self.starts = 0

    def _kubeconfig(self, service_account: str) -> Path:
        token = self.tools.kubectl(
            "create", "token", service_account, "-n", OPERATOR_NS, "--duration", "2h"
        ).strip()
        admin = json.loads(self.tools.cluster.kubeconfig.read_text())
        admin["users"] = [{"name": service_account, "user": {"token": token}}]
        admin["contexts"][0]["context"]["user"] = service_account
        path = self.workdir / "operator-kubeconfig"
        path.write_text(json.dumps(admin))
        path.chmod(0o600)
        return path

    def command_and_env(self) -> tuple[list[str], dict[str, str]]:
        deploy = self.tools.get("deployment", f"{RELEASE}-operator", OPERATOR_NS)
        pod = deploy["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        env["APEX_NAMESPACE"] = OPERATOR_NS  # the fieldRef metadata.namespace of the pod
        health, metrics = free_port(), free_port()
        env |= {
            "APEX_HTTP_PORT": str(health),
            "APEX_METRICS_PORT": str(metrics),
            "APEX_OPERATOR_NATS_URL": self.nats_url,
            "APEX_OPERATOR_INTERVAL": str(self.interval),
            "KUBECONFIG": str(self._kubeconfig(pod["serviceAccountName"])),
        }
        # The operator's default write path (server-side apply), whatever the kmock suites chose;
        # APEX_JOURNEY_SERVER_SIDE_APPLY=false runs the journey on the merge-patch path instead.
        env["APEX_SERVER_SIDE_APPLY"] = os.environ.get("APEX_JOURNEY_SERVER_SIDE_APPLY", "true")
        args = [a for a in container["args"] if a != "operator"]
        command = [sys.executable, "-m", "apextrader.cli", "operator", *args,
                   "--liveness", f"http://127.0.0.1:{health}/healthz"]  # fmt: skip
        base = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",) and not k.startswith("APEX_")}
        return command, base | env

    def start(self) -> None:
        command, env = self.command_and_env()
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n==== start {self.starts}: {' '.join(command)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def forbidden(self) -> list[str]:
        """Lines where the API server refused the operator (a verb the chart's RBAC lacks)."""
        refused = ("HTTP 403", "Forbidden", "forbidden:")
        return [line for line in self.log().splitlines() if any(word in line for word in refused)]


def secret_data(tools: Tools, name: str, key: str, ns: str = PIPELINE_NS) -> bytes:
    return base64.b64decode(tools.get("secret", name, ns)["data"][key])


def labelled_children(tools: Tools, instance: str, ns: str = PIPELINE_NS) -> dict[str, str]:
    """`Kind/name` → what only a writer of the object changes.

    Objects with a status that controllers keep writing (Deployments, StatefulSets, PDBs) are
    fingerprinted by generation, labels and our annotations (the deployment controller writes
    its own revision annotation during a rollout); the rest by resourceVersion."""
    kinds = "deployments,statefulsets,services,configmaps,secrets,networkpolicies,serviceaccounts,poddisruptionbudgets"
    out = tools.kubectl("get", kinds, "-n", ns, "-l", f"app.kubernetes.io/instance={instance}", "-o", "json")
    result = {}
    for item in json.loads(out)["items"]:
        meta = item["metadata"]
        if "generation" in meta and "status" in item:
            ours = {
                k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("apextrader.io/")
            }
            mark = json.dumps([meta["generation"], meta.get("labels"), ours], sort_keys=True)
        else:
            mark = meta["resourceVersion"]
        result[f"{item['kind']}/{meta['name']}"] = mark
    return result


def conditions(tp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in tp.get("status", {}).get("conditions", [])}


REPO_MANIFEST = REPO / "manifests" / "pipeline.yaml"
