"""`apex canary promote --local` means what it means on a cluster: the template is folded into the
spec, the stable decision agents restart on it, and the canary's processes and consumers go away
(the run then drains and accounts without them)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.apex_cli import apex, finish, start_up, wait_runtime

pytestmark = pytest.mark.slow


def test_local_promote_folds_and_retires_the_canary(tmp_path: Path) -> None:
    data_dir = tmp_path / "promote"
    proc = start_up(data_dir, "--duration", "40s")
    wait_runtime(data_dir, proc)
    time.sleep(3)
    result = apex("canary", "promote", "btc-perp", "--local", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 60
    agents: list[str] = []
    while time.monotonic() < deadline:
        agents = list(json.loads((data_dir / "runtime.json").read_text())["agents"])
        if not any(a.endswith("-canary") for a in agents):
            break
        time.sleep(0.5)
    assert agents and not any(a.endswith("-canary") for a in agents), agents
    spec = yaml.safe_load((data_dir / "pipeline.yaml").read_text())["spec"]
    assert "canary" not in spec
    summary = finish(proc, data_dir)
    assert summary["canary"]["phase"] == "Promoted"
    assert not [c for c in summary["consumers"] if c["durable"].endswith("-canary")]
    restarted = {a["key"] for a in summary["agents"] if a["restarts"] > 0}
    assert {"strategy-builder-stable", "risk-manager-stable", "execution-stable"} <= restarted
    assert all(c["matched"] == c["acked"] + c["dlq"] + c["pending"] for c in summary["consumers"])
