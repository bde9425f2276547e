"""The canary weight, owned here (docs/conventions.md, "Canary semantics").

From the CR to the risk gate in one module:

- `advance()` (machine.py) turns (spec.canary, status, clock) into the effective canary weight, which
  the operator and the local supervisor write to KV `canary.weight`;
- `track_weights()` splits an effective canary weight into each track's share of capital;
- `effective_weights()` is both at once, from (spec, status, clock): what a risk manager sizes with
  before KV answers, what the local view and the report plot;
- `parse_weight()` is the one 0–100 check (the spec's `Weight` type) for KV values and CLI input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from apextrader.canary.machine import advance
from apextrader.contracts.canary_spec import CanarySpec, Weight
from apextrader.contracts.names import Track
from apextrader.contracts.status import CanaryStatus

_WEIGHT: TypeAdapter[int] = TypeAdapter(Weight)


class WeightError(ValueError):
    """A weight outside 0–100 or not a whole number."""


def parse_weight(value: Any) -> int:
    """A canary weight (whole percent, 0–100), or WeightError saying what is wrong."""
    try:
        return _WEIGHT.validate_python(value, strict=isinstance(value, bool))
    except ValidationError:
        raise WeightError(f"weight must be a whole number 0-100, got {value!r}") from None


def track_weights(effective_canary_weight: int, has_canary: bool) -> dict[str, int]:
    """Capital share per decision track: stable = 100 − canary; without a canary, stable has 100."""
    if not has_canary:
        return {"stable": 100}
    return {"stable": 100 - effective_canary_weight, "canary": effective_canary_weight}


def track_weight(track: Track, effective_canary_weight: int, has_canary: bool) -> int:
    """One track's share (a track without a weight, e.g. `canary` with no spec.canary, has 0)."""
    return track_weights(effective_canary_weight, has_canary).get(track, 0)


def effective_weights(
    canary: CanarySpec | None, status: CanaryStatus | None, now: datetime
) -> dict[str, int]:
    """Each track's share for the spec, the last status (None: a fresh rollout) and the time.

    For steps `[pause: {}, setWeight: 20]` this is canary 0 until the pause is released: nothing is
    sized on a weight the rollout has not reached."""
    nxt = advance(canary, status, now)
    return track_weights(nxt.effective_weight, canary is not None)
