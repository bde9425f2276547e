"""Driving the `apex` CLI as a user would (subprocesses), and reading what a run left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "manifests" / "pipeline.yaml"


def apex(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apextrader.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def start_up(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    """`apex up` in the background (no live view), its output in data_dir/up.log."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "up.log").open("w")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apextrader.cli",
            "up",
            str(PIPELINE),
            "--no-ui",
            "--data-dir",
            str(data_dir),
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
    )


def wait_runtime(data_dir: Path, proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """runtime.json once every agent is up (apex up writes it after the last /ready)."""
    path = data_dir / "runtime.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"apex up exited {proc.returncode}:\n{(data_dir / 'up.log').read_text()[-4000:]}"
            )
        if path.exists():
            try:
                return dict(json.loads(path.read_text()))
            except json.JSONDecodeError:
                pass
        time.sleep(0.2)
    raise AssertionError("apex up did not write runtime.json in time")


def finish(proc: subprocess.Popen[str], data_dir: Path, timeout: float = 240) -> dict[str, Any]:
    """Wait for `apex up` to end and return summary.json."""
    rc = proc.wait(timeout)
    log = (data_dir / "up.log").read_text()
    assert rc == 0, log[-6000:]
    return dict(json.loads((data_dir / "summary.json").read_text()))
