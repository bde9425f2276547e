"""Helpers of the chart tests: render with real helm, split documents, find pods."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.tools import REPO

CHARTS = REPO / "charts"
OPERATOR_CHART = CHARTS / "apextrader"
PIPELINE_CHART = CHARTS / "trading-pipeline"
CRDS = REPO / "crds"
K8S_VERSION = "1.34.0"


def example_values(chart: Path) -> list[Path]:
    return sorted((chart / "ci").glob("*.yaml"))


def helm_template(helm: str, chart: Path, values: Path | None = None, *args: str) -> str:
    cmd = [helm, "template", "rel", str(chart), "--namespace", "apex", *args]
    if values is not None:
        cmd += ["-f", str(values)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, f"helm template {chart.name} {values or ''} failed:\n{out.stderr}"
    return out.stdout


def helm_template_error(helm: str, chart: Path, values: Path) -> str:
    """Render expecting a refusal; returns helm's message."""
    cmd = [helm, "template", "rel", str(chart), "--namespace", "apex", "-f", str(values)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode != 0, f"{values.name} was accepted:\n{out.stdout[:2000]}"
    return out.stderr


def documents(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if isinstance(d, dict)]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Pod":
            yield name, d["spec"]
        elif d["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield name, d["spec"]["template"]["spec"]


def restricted_violations(name: str, pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standard "restricted" profile, as the admission controller checks it."""
    problems: list[str] = []
    psc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"{name}: {key}")
    for vol in pod.get("volumes", []):
        allowed = {"configMap", "emptyDir", "projected", "secret", "downwardAPI", "persistentVolumeClaim"}
        if not set(vol) - {"name"} <= allowed:
            problems.append(f"{name}: volume {vol['name']} of a type restricted forbids")
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        sc = c.get("securityContext", {})
        where = f"{name}/{c['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot")
        if (sc.get("runAsUser") if "runAsUser" in sc else psc.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{where}: seccompProfile RuntimeDefault")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: capabilities must drop ALL")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
    return problems
