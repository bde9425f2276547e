"""Analysis results as metrics (`apex_canary_analysis_{value,threshold,result}`), from the shared
exporter and from the local supervisor's analysis of real /metrics pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NatsClient
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from apextrader.bus.kv import KV
from apextrader.bus.metrics import REGISTRY
from apextrader.canary.export import export_analysis
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.contracts.status import AnalysisCheck, AnalysisRun
from apextrader.local.canary_driver import LocalCanary

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _value(name: str, pipeline: str, criterion: str) -> float | None:
    labels = {"pipeline": pipeline, "track": "canary", "criterion": criterion}
    return REGISTRY.get_sample_value(f"apex_canary_analysis_{name}", labels)


def test_value_threshold_and_result_per_criterion() -> None:
    checks = [
        AnalysisCheck(name="maxDlqLoss", value=3, threshold=0, result="Fail"),
        AnalysisCheck(name="maxBusP99Ms", value=12.5, threshold=50, result="Pass"),
        AnalysisCheck(name="minExpectancy", value=None, threshold=0, result="Inconclusive"),
    ]
    export_analysis("export-a", AnalysisRun(at=T0, result="Fail", checks=checks))
    assert (_value("value", "export-a", "maxDlqLoss"), _value("result", "export-a", "maxDlqLoss")) == (3, 0)
    assert (
        _value("threshold", "export-a", "maxBusP99Ms") == 50
        and _value("result", "export-a", "maxBusP99Ms") == 1
    )
    assert _value("value", "export-a", "minExpectancy") is None
    assert _value("result", "export-a", "minExpectancy") == -1
    # a value that goes missing later is removed, not left stale
    checks[0] = AnalysisCheck(name="maxDlqLoss", value=None, threshold=0, result="Inconclusive")
    export_analysis("export-a", AnalysisRun(at=T0, result="Inconclusive", checks=checks))
    assert _value("value", "export-a", "maxDlqLoss") is None


async def test_the_local_supervisor_analyses_agents_pages_and_exports(nc: NatsClient) -> None:
    agent = CollectorRegistry()  # what one canary agent's /metrics serves
    dlq = Counter("apex_dlq_total", "", ["agent", "track", "stream", "reason"], registry=agent)
    events = Counter("apex_events_total", "", ["agent", "track", "type", "outcome"], registry=agent)
    lat = Histogram("apex_pipeline_latency_seconds", "", ["track"], buckets=(0.01, 0.1), registry=agent)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=agent)
    try:
        kv = KV(await nc.jetstream().create_key_value(bucket="apex-export-b"))
        spec = TradingPipelineSpec.model_validate(
            {
                "symbols": ["BTC/USDT:USDT"],
                "canary": {"weight": 5, "analysis": {"interval": "1m", "maxBusP99Ms": 50}},
            }
        )
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        local = LocalCanary(kv=kv, spec=spec, pipeline="export-b", metrics_urls=lambda: [url])
        await local.tick(T0)  # the rollout starts
        await local.tick(T0 + timedelta(seconds=1))  # first analysis: the baseline scrape
        assert _value("result", "export-b", "maxDlqLoss") == -1
        events.labels("execution", "canary", "order.approved", "acked").inc(10)
        dlq.labels("execution", "canary", "ORDERS", "handler_error").inc(2)
        for _ in range(100):
            lat.labels("canary").observe(0.05)
        await local.tick(T0 + timedelta(minutes=2))
        assert (
            _value("value", "export-b", "maxDlqLoss") == 2 and _value("result", "export-b", "maxDlqLoss") == 0
        )
        assert _value("threshold", "export-b", "maxBusP99Ms") == 50
        p99 = _value("value", "export-b", "maxBusP99Ms")
        assert p99 is not None and 10 < p99 <= 100 and _value("result", "export-b", "maxBusP99Ms") == 0
    finally:
        server.shutdown()
