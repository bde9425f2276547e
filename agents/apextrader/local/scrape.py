"""The few aggregations of `/metrics` samples the live view and the report need (sums over labels,
quantiles of a histogram). The parser and the quantile itself are `canary.analysis`'s, the only ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from apextrader.canary.analysis import Sample, parse_samples
from apextrader.canary.analysis import histogram_quantile as quantile_of_buckets

__all__ = ["Sample", "bucket_counts", "increase", "parse_samples", "quantile_of", "total"]


def _match(sample: Sample, name: str, labels: dict[str, str]) -> bool:
    return sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    return sum(s.value for s in samples if _match(s, name, labels))


def bucket_counts(samples: Iterable[Sample], name: str, **labels: str) -> dict[float, float]:
    """`sum by (le) (name_bucket{labels})`: cumulative count per upper bound."""
    buckets: dict[float, float] = {}
    for s in samples:
        if _match(s, f"{name}_bucket", labels):
            le = float(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
    return buckets


def quantile_of(q: float, samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    """`histogram_quantile(q, sum by (le) (name_bucket{labels}))`; None when there is no data."""
    return quantile_of_buckets(q, bucket_counts(samples, name, **labels))


def increase(now: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    """Bucket counts gained between two scrapes (`increase()`); `now` itself after a counter reset."""
    delta = {le: n - before.get(le, 0.0) for le, n in now.items()}
    return now if any(v < 0 for v in delta.values()) else delta
