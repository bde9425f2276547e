"""The Go/No-Go analysis (docs/conventions.md §3): five checks per track over one interval.

Two sources compute the same values: the agents' `/metrics` text (two scrapes, an interval apart,
differenced as Prometheus' `increase`/`rate` would), or PromQL against a Prometheus (`promql()` gives
the exact expressions). A check without data is `Inconclusive`, never `Pass`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from prometheus_client.parser import text_string_to_metric_families

from apextrader.contracts.canary_spec import CanaryAnalysis
from apextrader.contracts.status import AnalysisCheck, AnalysisRun, CheckResult

CheckName = Literal["maxAvgSlippageBps", "maxMarginViolations", "maxDlqLoss", "maxBusP99Ms", "minExpectancy"]
CHECKS: Final[tuple[CheckName, ...]] = (
    "maxAvgSlippageBps",
    "maxMarginViolations",
    "maxDlqLoss",
    "maxBusP99Ms",
    "minExpectancy",
)
AnalysisTrack = Literal["stable", "canary"]


def promql(check: CheckName, track: str, interval: str) -> str:
    """The PromQL of a check for one track (docs/conventions.md §3, verbatim)."""
    sel, i = f'{{track="{track}"}}', f"[{interval}]"
    return {
        "maxAvgSlippageBps": f"sum(rate(apex_slippage_bps_sum{sel}{i}))"
        f" / sum(rate(apex_slippage_bps_count{sel}{i}))",
        "maxMarginViolations": f"sum(increase(apex_margin_violations_total{sel}{i}))",
        "maxDlqLoss": f"sum(increase(apex_dlq_total{sel}{i}))",
        "maxBusP99Ms": "1000 * histogram_quantile(0.99, sum by (le) "
        f"(rate(apex_pipeline_latency_seconds_bucket{sel}{i})))",
        "minExpectancy": f"min(apex_expectancy{sel})",
    }[check]


def activity_promql(track: str, interval: str) -> str:
    """Events the track handled in the interval: evidence that an absent error counter means zero."""
    return f'sum(increase(apex_events_total{{track="{track}"}}[{interval}]))'


@dataclass
class TrackCounters:
    """Cumulative values of one track summed over every scraped series (one point in time)."""

    slippage_sum: float = 0.0
    slippage_count: float = 0.0
    margin_violations: float | None = None
    dlq: float | None = None
    events: float | None = None
    latency_buckets: dict[float, float] = field(default_factory=dict)
    expectancy: float | None = None


def _add(a: float | None, b: float) -> float:
    return (a or 0.0) + b


def parse_metrics(texts: Iterable[str]) -> dict[str, TrackCounters]:
    """Sum the analysis metrics of several `/metrics` pages per `track` label."""
    out: dict[str, TrackCounters] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                track = s.labels.get("track")
                if track is None:
                    continue
                c = out.setdefault(track, TrackCounters())
                if s.name == "apex_slippage_bps_sum":
                    c.slippage_sum += s.value
                elif s.name == "apex_slippage_bps_count":
                    c.slippage_count += s.value
                elif s.name == "apex_margin_violations_total":
                    c.margin_violations = _add(c.margin_violations, s.value)
                elif s.name == "apex_dlq_total":
                    c.dlq = _add(c.dlq, s.value)
                elif s.name == "apex_events_total":
                    c.events = _add(c.events, s.value)
                elif s.name == "apex_pipeline_latency_seconds_bucket":
                    le = float(s.labels["le"])
                    c.latency_buckets[le] = c.latency_buckets.get(le, 0.0) + s.value
                elif s.name == "apex_expectancy":
                    c.expectancy = s.value if c.expectancy is None else min(c.expectancy, s.value)
    return out


def _increase(cur: float | None, prev: float | None) -> float | None:
    """Prometheus' counter increase: a drop means the process restarted, so count from zero."""
    if cur is None:
        return None
    if prev is None or cur < prev:
        return cur
    return cur - prev


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' `histogram_quantile` over cumulative bucket counts (linear within a bucket)."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower_bound  # the quantile lies above the highest finite bucket
            span = count - lower_count
            return lower_bound + (le - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = le, count
    return None


def window_values(cur: TrackCounters | None, prev: TrackCounters | None) -> dict[CheckName, float | None]:
    """The five check values of a track over the interval between two scrapes (None: no data)."""
    if cur is None:
        return dict.fromkeys(CHECKS)
    p = prev or TrackCounters()
    count = _increase(cur.slippage_count, p.slippage_count) if cur.slippage_count else None
    total = _increase(cur.slippage_sum, p.slippage_sum)
    events = _increase(cur.events, p.events)
    active = events is not None and events > 0

    def errors(c: float | None, q: float | None) -> float | None:
        inc = _increase(c, q)
        return inc if inc is not None else (0.0 if active else None)

    buckets = {le: (_increase(v, p.latency_buckets.get(le)) or 0.0) for le, v in cur.latency_buckets.items()}
    p99 = histogram_quantile(0.99, buckets)
    return {
        "maxAvgSlippageBps": (total or 0.0) / count if count else None,
        "maxMarginViolations": errors(cur.margin_violations, p.margin_violations),
        "maxDlqLoss": errors(cur.dlq, p.dlq),
        "maxBusP99Ms": p99 * 1000.0 if p99 is not None else None,
        "minExpectancy": cur.expectancy,
    }


def _threshold(spec: CanaryAnalysis, check: CheckName) -> float:
    return float(
        {
            "maxAvgSlippageBps": spec.max_avg_slippage_bps,
            "maxMarginViolations": spec.max_margin_violations,
            "maxDlqLoss": spec.max_dlq_loss,
            "maxBusP99Ms": spec.max_bus_p99_ms,
            "minExpectancy": spec.min_expectancy,
        }[check]
    )


def judge(
    spec: CanaryAnalysis,
    values: Mapping[CheckName, float | None],
    now: datetime,
    track: AnalysisTrack = "canary",
) -> AnalysisRun:
    """Compare values with thresholds: `max*` pass at or below, `minExpectancy` must exceed."""
    checks = []
    for name in CHECKS:
        value, threshold = values.get(name), _threshold(spec, name)
        result: CheckResult
        if value is None or math.isnan(value):
            value, result = None, "Inconclusive"
        elif name == "minExpectancy":
            result = "Pass" if value > threshold else "Fail"
        else:
            result = "Pass" if value <= threshold else "Fail"
        checks.append(AnalysisCheck(name=name, value=value, threshold=threshold, result=result))
    results = {c.result for c in checks}
    overall: CheckResult = (
        "Fail" if "Fail" in results else "Inconclusive" if "Inconclusive" in results else "Pass"
    )
    return AnalysisRun(at=now, track=track, result=overall, checks=checks)
