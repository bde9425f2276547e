"""The track's capital share (CONVENTIONS.md 1, canary semantics): weight(canary) = KV
`canary.weight` (the effective weight: 0 when aborted, 100 when promoted), weight(stable) = 100 -
that, and stable has 100 when the spec has no canary."""

from __future__ import annotations

from apextrader.contracts.names import Track
from apextrader.contracts.spec import TradingPipelineSpec


def declared_canary_weight(spec: TradingPipelineSpec) -> int:
    """The canary weight the spec declares before the operator has written KV (manual weight, or the
    first `setWeight` step; 0 for a stepped canary that has not reached one)."""
    canary = spec.canary
    if canary is None or canary.abort:
        return 0
    if canary.promote:
        return 100
    if canary.weight is not None:
        return canary.weight
    for step in canary.steps or []:
        if step.set_weight is not None:
            return step.set_weight
    return 0


def track_weight(track: Track, canary_weight: int | None, has_canary: bool) -> int:
    """Percent of capital on `track` given the effective canary weight (None: not known yet → 0
    for the canary, so nothing is sized on a weight nobody applied)."""
    if not has_canary:
        return 100 if track != "canary" else 0
    w = max(0, min(100, canary_weight if canary_weight is not None else 0))
    return w if track == "canary" else 100 - w


def capital_share(capital: float, weight: int) -> float:
    """`capital x weight / 100`."""
    return capital * weight / 100.0
