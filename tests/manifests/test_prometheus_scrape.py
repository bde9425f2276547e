"""A real Prometheus (Debian's `prometheus`) scrapes the agent runtime's real `/metrics` (the bus
metrics REGISTRY served by `runtime.http.HealthServer`), loads our alert rules, and evaluates them:
every alert whose criterion the canary track breaks becomes pending or firing, for the canary only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from apextrader.bus import metrics as m
from apextrader.runtime.http import HealthServer
from tests.fixtures.tools import require_tool
from tests.manifests.observability import RULES_FILE, alert_rules

PIPELINE = "btc-perp"
#: Label values only this test writes, so series from other tests in the process do not interfere.
EXCHANGE, SYMBOL, STRATEGY = "okx", "SCRAPE/USDT:USDT", "scrape-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _feed(stop: asyncio.Event) -> None:
    """What a pipeline whose canary misbehaves records, continuously (counters must keep rising)."""
    m.EXPECTANCY.labels(track="canary", strategy=STRATEGY).set(-0.5)
    m.EXPECTANCY.labels(track="stable", strategy=STRATEGY).set(0.8)
    m.SOURCE_UP.labels(exchange=EXCHANGE).set(0)
    # The registry is the process's: an earlier test's pipelines (the local driver's "local") go.
    m.CANARY_PHASE.clear()
    m.CANARY_WEIGHT.clear()
    m.CANARY_PHASE.labels(pipeline=PIPELINE, phase="Progressing").set(0)
    m.CANARY_PHASE.labels(pipeline=PIPELINE, phase="Aborted").set(1)
    m.CANARY_WEIGHT.labels(pipeline=PIPELINE).set(0)
    m.STREAM_FILL.labels(stream="APEX_BTC_PERP_ORDERS").set(0.9)  # a protected stream nearly full
    while not stop.is_set():
        m.STREAM_GAP.labels(agent="feature-engineer", stream="APEX_BTC_PERP_MARKET").inc()
        m.STREAM_DISCARDED.labels(stream="APEX_BTC_PERP_ORDERS").inc()
        m.SNAPSHOTS_SHED.labels(agent="feature-engineer").inc()  # behind its market data
        for track, latency, slippage in (("canary", 0.2, 10.0), ("stable", 0.004, 1.0)):
            m.PIPELINE_LATENCY.labels(track=track).observe(latency)
            m.SLIPPAGE_BPS.labels(track=track, exchange=EXCHANGE, symbol=SYMBOL).observe(slippage)
            m.EVENTS.labels(agent="execution", track=track, type="order.approved", outcome="acked").inc()
        m.MARGIN_VIOLATIONS.labels(track="canary").inc()
        m.DLQ.labels(agent="execution", track="canary", stream="APEX_BTC_PERP_ORDERS", reason="invalid").inc()
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _prometheus(tmp_path: Path, agent_port: int) -> AsyncIterator[str]:
    binary = require_tool("prometheus")
    port = _free_port()
    dead_port = _free_port()  # nothing listens here: an agent that is down
    target = {"pipeline": PIPELINE, "agent": "execution"}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": "apextrader-agents",
                "honor_labels": True,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{agent_port}"], "labels": {**target, "track": "stable"}},
                    {"targets": [f"127.0.0.1:{dead_port}"], "labels": {**target, "track": "canary"}},
                ],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


async def _get(session: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with session.get(url, params=params) as resp:
        body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]


async def _wait_for_alerts(
    session: aiohttp.ClientSession, base: str, names: set[str]
) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    for _ in range(60):
        with contextlib.suppress(aiohttp.ClientError):
            alerts = (await _get(session, f"{base}/api/v1/alerts"))["alerts"]
            if names <= {a["labels"]["alertname"] for a in alerts}:
                return alerts
        await asyncio.sleep(0.5)
    return alerts


async def test_prometheus_scrapes_agent_metrics_and_every_alert_evaluates(tmp_path: Path) -> None:
    require_tool("prometheus")
    server = HealthServer("127.0.0.1", 0, alive=lambda: True, ready=lambda: {"bus": True})
    agent_port = await server.start()
    stop = asyncio.Event()
    feeder = asyncio.create_task(_feed(stop))
    try:
        async with _prometheus(tmp_path, agent_port) as base, aiohttp.ClientSession() as session:
            expected = {r["alert"] for r in alert_rules()}
            alerts = await _wait_for_alerts(session, base, expected)
            log = (tmp_path / "prometheus.log").read_text()[-2000:]
            assert {a["labels"]["alertname"] for a in alerts} == expected, log

            # The scrape is real: our metric names arrive with the target's pipeline label.
            up = await _get(session, f"{base}/api/v1/query", query='up{job="apextrader-agents"}')
            assert {(s["metric"]["track"], s["value"][1]) for s in up["result"]} == {
                ("stable", "1"),
                ("canary", "0"),
            }
            latency = await _get(
                session,
                f"{base}/api/v1/query",
                query="count by (pipeline) (apex_pipeline_latency_seconds_bucket)",
            )
            assert [s["metric"] for s in latency["result"]] == [{"pipeline": PIPELINE}]

            # Every rule evaluated without error.
            groups = (await _get(session, f"{base}/api/v1/rules"))["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert len(rules) == len(expected)
            assert [r["name"] for r in rules if r["health"] != "ok"] == []
    finally:
        stop.set()
        await feeder
        await server.stop()

    by_name: dict[str, list[dict[str, str]]] = {}
    for a in alerts:
        by_name.setdefault(a["labels"]["alertname"], []).append(a["labels"])
    for name in ("ApexBusLatencyP99High", "ApexSlippageHigh", "ApexMarginViolation", "ApexDLQGrowing"):
        mine = [labels for labels in by_name[name] if labels.get("pipeline") == PIPELINE]
        assert {labels["track"] for labels in mine} == {"canary"}, (name, mine)
    expectancy = [lab for lab in by_name["ApexExpectancyNonPositive"] if lab.get("strategy") == STRATEGY]
    assert [lab["track"] for lab in expectancy] == ["canary"]
    assert [lab["track"] for lab in by_name["ApexAgentDown"]] == ["canary"]
    assert {lab["exchange"] for lab in by_name["ApexMarketSourceDown"]} >= {EXCHANGE}
    assert [lab["pipeline"] for lab in by_name["ApexCanaryAborted"]] == [PIPELINE]
    # Alerts without `for` fire at once; the others wait in pending, as written.
    states = {a["labels"]["alertname"]: a["state"] for a in alerts}
    assert states["ApexCanaryAborted"] == "firing" and states["ApexBusLatencyP99High"] == "pending"
