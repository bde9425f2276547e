"""The Dockerfile: hadolint-clean, and the properties the chart and the operator rely on."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

from tests.fixtures.tools import REPO

DOCKERFILE = REPO / "Dockerfile"


def _hadolint(hadolint: str, path: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        [hadolint, "--no-fail", "--format", "json", str(path)], capture_output=True, text=True, check=True
    )
    findings: list[dict[str, object]] = json.loads(out.stdout or "[]")
    return findings


def test_hadolint_finds_nothing(hadolint: str) -> None:
    findings = _hadolint(hadolint, DOCKERFILE)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_would_catch_a_root_image(hadolint: str, tmp_path: Path) -> None:
    # The lint is live: the same checks flag a Dockerfile that ends as root and pins nothing.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    codes = {f["code"] for f in _hadolint(hadolint, bad)}
    assert {"DL3007", "DL3002"} <= codes


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(r.split(None, 1)[0].upper(), r.split(None, 1)[1] if " " in r else "") for r in rows]


def test_multi_stage_slim_python_311_non_root_entrypoint_apex() -> None:
    ins = _instructions()
    bases = [arg for op, arg in ins if op == "FROM"]
    assert len(bases) >= 2 and all(b.startswith("python:3.11-slim") for b in bases)
    users = [arg for op, arg in ins if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert [arg for op, arg in ins if op == "ENTRYPOINT"] == ['["apex"]']
    (health,) = [arg for op, arg in ins if op == "HEALTHCHECK"]
    assert "APEX_HEALTH_PATH" in health
    env = " ".join(arg for op, arg in ins if op == "ENV")
    assert "APEX_HEALTH_PATH=/health" in env and "APEX_HTTP_PORT=8080" in env
    # Read-only root FS: no bytecode writes at run time, HOME on the /tmp emptyDir.
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
        "wheel"
    ]["packages"]
    needed = {"pyproject.toml", "README.md"} | {p.split("/")[0] for p in packages}
    assert needed <= allowed
    copied = {arg.split()[0] for op, arg in _instructions() if op == "COPY" and "--from" not in arg}
    assert copied <= allowed


def test_version_default_is_the_package_version() -> None:
    # The Dockerfile cannot import Python: its VERSION default must follow apextrader.__version__.
    from apextrader import __version__

    args = [value for op, value in _instructions() if op == "ARG" and value.startswith("VERSION=")]
    assert args == [f"VERSION={__version__}"]
