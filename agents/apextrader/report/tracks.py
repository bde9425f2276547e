"""Per-track numbers of the `apex up` report that need a definition: the track's own weight, the
settlement currency, slippage summarised so that outliers cannot hide, and the walk-forward gate's
last record per market (from the backtester's gauges).

Slippage per fill is in bps against the mid at decision, positive = adverse (worse than mid),
negative = price improvement. Three figures together:

* `signed_mean`: the mean of the signed values (what "average slippage" means in the seed's
  "< 5 bps average slippage"; improvements offset adverse fills);
* `mean_adverse`: the mean of max(0, x) over all fills (what `apex_slippage_bps`, which records
  improvements as 0, averages: the analysis key `maxAvgSlippageBps`);
* `p95_abs`: the 95th percentile of |x| (linear interpolation), and `worst`, the single most adverse
  fill, so a few fills at -375 bps cannot disappear into a mean of a few bps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from apextrader.canary import track_weights
from apextrader.report.run_summary import GateRecord, RunSummary

SLIPPAGE_NOTE: Final = (
    "Slippage per fill in bps against the mid at decision; positive = adverse. Signed mean: "
    "improvements offset adverse fills. Mean adverse: improvements count as 0 (the apex_slippage_bps "
    "metric and the maxAvgSlippageBps analysis). p95 |slippage| and worst: the tail a mean can hide."
)


@dataclass(frozen=True)
class SlippageSummary:
    signed_mean: float | None
    mean_adverse: float | None
    p95_abs: float | None
    worst: float | None  # the most adverse fill (largest signed value)


def slippage_summary(bps: list[float]) -> SlippageSummary:
    if not bps:
        return SlippageSummary(None, None, None, None)
    x = np.asarray(bps, dtype=np.float64)
    return SlippageSummary(
        signed_mean=float(x.mean()),
        mean_adverse=float(np.maximum(x, 0.0).mean()),
        p95_abs=float(np.percentile(np.abs(x), 95)),
        worst=float(x.max()),
    )


def own_weight(track: str, canary_weight_applied: float | None, has_canary: bool) -> float | None:
    """The track's own share of capital (%): the canary's applied weight for the canary, 100 minus
    it for stable (each risk manager reports the canary weight it applied)."""
    if not has_canary:
        return 100.0 if track == "stable" else None
    if canary_weight_applied is None:
        return None
    return float(track_weights(round(canary_weight_applied), True).get(track, 0))


def currency(s: RunSummary) -> str:
    """The settlement currency of the run's symbols (`BTC/USDT:USDT` settles in USDT), which the
    capital and PnL are counted in; 'quote currency' when they disagree or none is known."""
    found = {p.symbol.split(":")[-1].split("/")[-1] for p in s.prices}
    found |= {f.symbol.split(":")[-1].split("/")[-1] for f in s.fills}
    return found.pop() if len(found) == 1 else "quote currency"


class _Sample(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def value(self) -> float: ...


GATE_LABELS: Final = ("track", "strategy", "exchange", "symbol")


def gate_records(samples: Iterable[_Sample]) -> list[GateRecord]:
    """The backtester's `apex_walkforward_*` gauges, one record per (track, strategy, market)."""
    by_key: dict[tuple[str, ...], dict[str, float]] = {}
    for s in samples:
        if s.name.startswith("apex_walkforward_") and all(k in s.labels for k in GATE_LABELS):
            key = tuple(s.labels[k] for k in GATE_LABELS)
            by_key.setdefault(key, {})[s.name.removeprefix("apex_walkforward_")] = s.value
    return [
        GateRecord(
            **dict(zip(GATE_LABELS, key, strict=True)),
            accepted=v["accepted"] == 1.0,
            statistic=v.get("statistic"),
            threshold=v.get("threshold"),
        )
        for key, v in sorted(by_key.items())
        if "accepted" in v
    ]
