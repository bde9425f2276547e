"""`apex up` end to end: real nats-server, seven agents as processes, paper trading on synthetic data.

Drives the CLI as a user would and judges the run from what JetStream recorded (summary.json) and
the report, never from internals.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.apex_cli import finish, start_up, wait_runtime

pytestmark = pytest.mark.slow


def assert_clean_flow(summary: dict) -> None:  # type: ignore[type-arg]
    # published == acked + DLQ on every flow consumer, nothing left pending
    for c in summary["consumers"]:
        assert c["pending"] == 0, c
        assert c["matched"] == c["acked"] + c["dlq"], c
        assert c["acked"] >= 0, c
    # every fill traces back to a market.snapshot
    assert summary["fills"], "no fills"
    untraced = [f for f in summary["fills"] if not f["traced"]]
    assert untraced == []
    # zero duplicate orders
    assert all(t["duplicate_fills"] == 0 for t in summary["tracks"])


def test_sixty_seconds_of_paper_trading_fills_both_tracks(tmp_path: Path) -> None:
    data_dir = tmp_path / "run"
    report = tmp_path / "report.html"
    proc = start_up(data_dir, "--duration", "60s", "--report", str(report))
    summary = finish(proc, data_dir)
    fills = {t["track"]: t["fills"] for t in summary["tracks"]}
    assert fills.get("stable", 0) > 0 and fills.get("canary", 0) > 0, fills
    assert_clean_flow(summary)
    assert summary["published"]["APEX_BTC_PERP_MARKET"] > 0
    # exact per-event latencies over the steady state (after the start-up backlog cleared)
    assert summary["steady_window"] and summary["steady_snapshots"] > 0
    stages = summary["stage_latency"]
    assert 0 < stages["order.filled"]["count"] <= sum(fills.values())
    assert stages["features.computed"]["count"] > 100
    assert 0 <= stages["features.computed"]["p50_ms"] <= stages["features.computed"]["p99_ms"]
    # memory was sampled for every agent (that live agents load no numba: tests/quant/test_jit_modes.py)
    rss = {a["key"]: a["rss_peak_mb"] for a in summary["agents"]}
    assert all(v is not None and v > 20 for v in rss.values()), rss
    assert summary["rss_total_peak_mb"] >= max(rss.values())
    html = report.read_text()
    assert "Go/No-Go" in html and "Trades on price" in html
    assert not (data_dir / "runtime.json").exists()


def test_chaos_kill_each_agent_and_the_server_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "chaos"
    proc = start_up(data_dir, "--duration", "75s")
    runtime = wait_runtime(data_dir, proc)
    killed = []
    for key in list(runtime["agents"]):
        current = json.loads((data_dir / "runtime.json").read_text())
        os.kill(current["agents"][key]["pid"], signal.SIGKILL)
        killed.append(key)
        time.sleep(3)
    current = json.loads((data_dir / "runtime.json").read_text())
    os.kill(current["nats_pid"], signal.SIGKILL)
    summary = finish(proc, data_dir)
    outages = {o["key"] for a in summary["agents"] for o in a["outages"]}
    assert outages == set(killed)
    assert all(a["ready_at_end"] for a in summary["agents"])
    assert all(o["ended"] is not None for a in summary["agents"] for o in a["outages"]), (
        "an agent did not recover"
    )
    assert summary["bus_downtime_s"] > 0
    assert_clean_flow(summary)
