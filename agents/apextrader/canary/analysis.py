"""The Go/No-Go judgement (docs/conventions.md §3), the only one: five criteria per track.

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

from apextrader.bus.metrics import MetricName as M
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
        "maxAvgSlippageBps": f"sum(rate({M.SLIPPAGE_BPS}_sum{sel}{i}))"
        f" / sum(rate({M.SLIPPAGE_BPS}_count{sel}{i}))",
        "maxMarginViolations": f"sum(increase({M.MARGIN_VIOLATIONS}{sel}{i}))",
        "maxDlqLoss": f"sum(increase({M.DLQ}{sel}{i}))",
        "maxBusP99Ms": "1000 * histogram_quantile(0.99, sum by (le) "
        f"(rate({M.PIPELINE_LATENCY}_bucket{sel}{i})))",
        "minExpectancy": f"min({M.EXPECTANCY}{sel})",
    }[check]


def activity_promql(track: str, interval: str) -> str:
    """Events the track handled in the interval: evidence that an absent error counter means zero."""
    return f'sum(increase({M.EVENTS}{{track="{track}"}}[{interval}]))'


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


@dataclass(frozen=True)
class Sample:
    """One sample of a `/metrics` page."""

    name: str
    labels: dict[str, str]
    value: float


def parse_samples(text: str) -> list[Sample]:
    """The samples of one Prometheus text page: the one parser of `/metrics` text."""
    return [
        Sample(s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def parse_metrics(texts: Iterable[str]) -> dict[str, TrackCounters]:
    """Sum the analysis metrics of several `/metrics` pages per `track` label."""
    out: dict[str, TrackCounters] = {}
    for text in texts:
        for s in parse_samples(text):
            track = s.labels.get("track")
            if track is not None:
                _accumulate(out.setdefault(track, TrackCounters()), s)
    return out


def _accumulate(c: TrackCounters, s: Sample) -> None:
    if s.name == f"{M.SLIPPAGE_BPS}_sum":
        c.slippage_sum += s.value
    elif s.name == f"{M.SLIPPAGE_BPS}_count":
        c.slippage_count += s.value
    elif s.name == M.MARGIN_VIOLATIONS:
        c.margin_violations = _add(c.margin_violations, s.value)
    elif s.name == M.DLQ:
        c.dlq = _add(c.dlq, s.value)
    elif s.name == M.EVENTS:
        c.events = _add(c.events, s.value)
    elif s.name == f"{M.PIPELINE_LATENCY}_bucket":
        le = float(s.labels["le"])
        c.latency_buckets[le] = c.latency_buckets.get(le, 0.0) + s.value
    elif s.name == M.EXPECTANCY:
        c.expectancy = s.value if c.expectancy is None else min(c.expectancy, s.value)


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


def thresholds(spec: CanaryAnalysis) -> dict[CheckName, float]:
    """The spec's threshold of each criterion (`spec.canary.analysis`, or its defaults)."""
    return {
        "maxAvgSlippageBps": float(spec.max_avg_slippage_bps),
        "maxMarginViolations": float(spec.max_margin_violations),
        "maxDlqLoss": float(spec.max_dlq_loss),
        "maxBusP99Ms": float(spec.max_bus_p99_ms),
        "minExpectancy": float(spec.min_expectancy),
    }


def check(name: CheckName, value: float | None, threshold: float) -> CheckResult:
    """One criterion: `max*` pass at or below the threshold, `minExpectancy` must exceed it; no data
    (None or NaN) is Inconclusive, never a pass."""
    if value is None or math.isnan(value):
        return "Inconclusive"
    if name == "minExpectancy":
        return "Pass" if value > threshold else "Fail"
    return "Pass" if value <= threshold else "Fail"


def overall(results: Iterable[CheckResult]) -> CheckResult:
    """Any Fail fails; otherwise any Inconclusive is Inconclusive; all Pass passes."""
    seen = set(results)
    return "Fail" if "Fail" in seen else "Inconclusive" if "Inconclusive" in seen or not seen else "Pass"


def judge(
    spec: CanaryAnalysis | Mapping[CheckName, float],
    values: Mapping[CheckName, float | None],
    now: datetime,
    track: AnalysisTrack = "canary",
) -> AnalysisRun:
    """The Go/No-Go judgement: every criterion's value against its threshold (the spec's, or a
    mapping of them, e.g. from `summary.json`). The operator, `apex up` and the report all use it."""
    limits = thresholds(spec) if isinstance(spec, CanaryAnalysis) else spec
    checks = []
    for name in CHECKS:
        value, threshold = values.get(name), limits[name]
        result = check(name, value, threshold)
        shown = None if result == "Inconclusive" else value
        checks.append(AnalysisCheck(name=name, value=shown, threshold=threshold, result=result))
    return AnalysisRun(at=now, track=track, result=overall(c.result for c in checks), checks=checks)
