"""Reading agents' `/metrics` (Prometheus text) into samples, and the few aggregations the live view and
the report need (sums over labels, histogram quantiles as Prometheus' `histogram_quantile` computes them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append(Sample(s.name, dict(s.labels), float(s.value)))
    return out


def _match(sample: Sample, name: str, labels: dict[str, str]) -> bool:
    return sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    return sum(s.value for s in samples if _match(s, name, labels))


def histogram_quantile(q: float, samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    """`histogram_quantile(q, sum by (le) (name_bucket{labels}))`, linear within a bucket; None if empty."""
    buckets: dict[float, float] = {}
    for s in samples:
        if _match(s, f"{name}_bucket", labels):
            le = float(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
    if not buckets:
        return None
    bounds = sorted(buckets)
    count = buckets[bounds[-1]]
    if count <= 0:
        return None
    rank = q * count
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if math.isinf(b):
                return prev_bound
            if c == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (c - prev_count)
        prev_bound, prev_count = b, c
    return prev_bound
