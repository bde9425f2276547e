"""`apex up` reads agents' /metrics text: sums over labels and Prometheus-style quantiles."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from apextrader.canary.analysis import histogram_quantile as quantile_of_buckets
from apextrader.local.scrape import increase, parse_samples, quantile_of, total


def test_totals_and_quantiles_from_exposition_text() -> None:
    reg = CollectorRegistry()
    events = Counter("apex_events_total", "", ["agent", "outcome"], registry=reg)
    events.labels("risk-manager", "acked").inc(7)
    events.labels("risk-manager", "dlq").inc(2)
    events.labels("execution", "acked").inc(3)
    lat = Histogram("apex_pipeline_latency_seconds", "", ["track"], buckets=(0.01, 0.1, 1.0), registry=reg)
    for v in [0.005] * 50 + [0.05] * 40 + [0.5] * 10:
        lat.labels("stable").observe(v)
    lat.labels("canary").observe(5.0)
    samples = parse_samples(generate_latest(reg).decode())
    assert total(samples, "apex_events_total", outcome="acked") == 10
    assert total(samples, "apex_events_total", agent="risk-manager") == 9
    # 50 of 100 in the first bucket: the median is its upper bound; p95 interpolates in (0.1, 1.0]
    assert quantile_of(0.5, samples, "apex_pipeline_latency_seconds", track="stable") == 0.01
    p95 = quantile_of(0.95, samples, "apex_pipeline_latency_seconds", track="stable")
    assert p95 is not None and abs(p95 - 0.55) < 1e-9
    # above the highest finite bucket: Prometheus answers that bucket's bound
    assert quantile_of(0.99, samples, "apex_pipeline_latency_seconds", track="canary") == 1.0
    assert quantile_of(0.5, samples, "apex_pipeline_latency_seconds", track="none") is None


def test_live_view_latency_covers_the_recent_window_only() -> None:
    """A slow start-up (seconds of backlog) must not dominate the view's p99 a minute later."""
    from apextrader.local.monitor import LATENCY_WINDOW_S, Monitor

    reg = CollectorRegistry()
    lat = Histogram(
        "apex_pipeline_latency_seconds", "", ["track"], buckets=(0.01, 0.1, 1.0, 10.0), registry=reg
    )
    monitor = Monitor(supervisor=None, tracks=["stable"])  # type: ignore[arg-type]

    def poll(at: float) -> float | None:
        recent = monitor._recent_latency(at, parse_samples(generate_latest(reg).decode()))
        return quantile_of_buckets(0.99, recent["stable"])

    for _ in range(100):
        lat.labels("stable").observe(5.0)  # start-up backlog: 5 s each
    assert poll(0.0) == 10.0 * 0.99 + 1.0 * 0.01  # the first poll sees everything so far
    for t in range(1, int(LATENCY_WINDOW_S) + 5):
        for _ in range(10):
            lat.labels("stable").observe(0.005)
        p99 = poll(float(t))
    assert p99 is not None and p99 <= 0.01  # the backlog has left the window
    assert increase({1.0: 3.0, float("inf"): 5.0}, {1.0: 4.0, float("inf"): 9.0}) == {
        1.0: 3.0,
        float("inf"): 5.0,
    }
