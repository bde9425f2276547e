"""Go/No-Go analysis from real prometheus-client exposition text and from a Prometheus HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from apextrader.canary import histogram_quantile, judge, parse_metrics, promql, window_values
from apextrader.canary.sources import prometheus_values, scrape
from apextrader.contracts.canary_spec import CanaryAnalysis

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class AgentMetrics:
    """The docs/conventions.md §3 metrics as an agent exposes them (a real prometheus-client registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("apex_events", "", ["agent", "track", "type", "outcome"], registry=r)
        self.slippage = Histogram("apex_slippage_bps", "", ["track", "exchange", "symbol"], registry=r)
        self.margin = Counter("apex_margin_violations", "", ["track"], registry=r)
        self.dlq = Counter("apex_dlq", "", ["agent", "track", "stream", "reason"], registry=r)
        self.latency = Histogram("apex_pipeline_latency_seconds", "", ["track"], buckets=BUCKETS, registry=r)
        self.expectancy = Gauge("apex_expectancy", "", ["track", "strategy"], registry=r)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def test_values_over_an_interval_are_differences_of_two_scrapes() -> None:
    m = AgentMetrics()
    m.events.labels("execution", "canary", "order.approved", "acked").inc(10)
    m.slippage.labels("canary", "binance", "BTC/USDT:USDT").observe(100.0)  # before the window
    before = parse_metrics([m.text()])
    slips = [1.0, 2.5, 4.0, 3.5]
    for s in slips:
        m.slippage.labels("canary", "okx", "ETH/USDT:USDT").observe(s)
    m.events.labels("execution", "canary", "order.approved", "acked").inc(4)
    rng = np.random.default_rng(7)
    lat = rng.uniform(0.001, 0.09, size=500)
    for x in lat:
        m.latency.labels("canary").observe(float(x))
    m.expectancy.labels("canary", "breakout").set(0.8)
    m.expectancy.labels("canary", "meanReversion").set(-0.1)
    after = parse_metrics([m.text()])
    v = window_values(after["canary"], before["canary"])
    assert v["maxAvgSlippageBps"] == pytest.approx(np.mean(slips))
    assert v["maxMarginViolations"] == 0.0  # no series, but the track was active: zero, not no-data
    assert v["maxDlqLoss"] == 0.0
    assert v["minExpectancy"] == pytest.approx(-0.1)
    # Prometheus interpolates inside the bucket holding the 99th percentile: (0.05, 0.1]
    assert 50.0 < v["maxBusP99Ms"] <= 100.0  # type: ignore[operator]
    run = judge(CanaryAnalysis(), v, NOW)
    assert run.result == "Fail"
    assert [c.name for c in run.checks if c.result == "Fail"] == ["minExpectancy"]


def test_no_data_is_inconclusive_never_pass() -> None:
    m = AgentMetrics()
    m.events.labels("execution", "stable", "order.approved", "acked").inc()
    counters = parse_metrics([m.text()])
    v = window_values(counters.get("canary"), None)
    assert set(v.values()) == {None}
    run = judge(CanaryAnalysis(), v, NOW)
    assert run.result == "Inconclusive"
    assert {c.result for c in run.checks} == {"Inconclusive"}


def test_counter_reset_counts_from_zero_and_dlq_fails() -> None:
    m = AgentMetrics()
    m.dlq.labels("risk-manager", "canary", "APEX_P_SIGNALS", "handler_error").inc(3)
    before = parse_metrics([m.text()])
    restarted = AgentMetrics()  # the pod restarted: counters start again
    restarted.dlq.labels("risk-manager", "canary", "APEX_P_SIGNALS", "handler_error").inc(1)
    v = window_values(parse_metrics([restarted.text()])["canary"], before["canary"])
    assert v["maxDlqLoss"] == 1.0
    assert judge(CanaryAnalysis(), v, NOW).checks[2].result == "Fail"


def test_all_pass_when_every_check_is_within_threshold() -> None:
    values = {
        "maxAvgSlippageBps": 2.0,
        "maxMarginViolations": 0.0,
        "maxDlqLoss": 0.0,
        "maxBusP99Ms": 40.0,
        "minExpectancy": 0.3,
    }
    assert judge(CanaryAnalysis(), values, NOW).result == "Pass"  # type: ignore[arg-type]
    values["minExpectancy"] = 0.0  # must exceed, not equal
    assert judge(CanaryAnalysis(), values, NOW).result == "Fail"  # type: ignore[arg-type]


def test_histogram_quantile_matches_prometheus_rules() -> None:
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, {0.1: 0.0, float("inf"): 10.0}) == 0.1  # above the last finite bound
    assert histogram_quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None


def test_promql_is_the_conventions_text() -> None:
    assert promql("maxDlqLoss", "canary", "5m") == 'sum(increase(apex_dlq_total{track="canary"}[5m]))'
    assert promql("maxBusP99Ms", "stable", "1m").startswith("1000 * histogram_quantile(0.99, sum by (le)")


async def test_prometheus_source_and_scrape() -> None:
    """A Prometheus HTTP API answering in its wire format; error counters empty but activity present."""
    answers = {
        "apex_slippage_bps_sum": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "3.5"]}]},
        "apex_margin_violations_total": {"resultType": "vector", "result": []},
        "apex_dlq_total": {"resultType": "vector", "result": []},
        "apex_pipeline_latency_seconds_bucket": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [0, "NaN"]}],
        },
        "apex_expectancy": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "0.2"]}]},
        "apex_events_total": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "12"]}]},
    }
    seen: list[str] = []

    async def query(request: web.Request) -> web.Response:
        q = request.query["query"]
        seen.append(q)
        key = next(k for k in answers if k in q)
        return web.json_response({"status": "success", "data": answers[key]})

    m = AgentMetrics()
    m.expectancy.labels("canary", "breakout").set(1.5)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=m.text())

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        v = await prometheus_values(f"http://127.0.0.1:{port}", "canary", "5m")
        pages = await scrape([f"http://127.0.0.1:{port}/metrics", "http://127.0.0.1:1/metrics"])
    finally:
        await runner.cleanup()
    assert v == {
        "maxAvgSlippageBps": 3.5,
        "maxMarginViolations": 0.0,
        "maxDlqLoss": 0.0,
        "maxBusP99Ms": None,
        "minExpectancy": 0.2,
    }
    assert promql("maxDlqLoss", "canary", "5m") in seen
    assert len(pages) == 1 and parse_metrics(pages)["canary"].expectancy == 1.5
