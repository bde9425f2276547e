"""`canary.weights`: the one owner of each track's weight and of the 0-100 check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apextrader.canary import WeightError, effective_weights, parse_weight, track_weight, track_weights
from apextrader.contracts.canary_spec import CanarySpec

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_split_per_track() -> None:
    assert track_weights(5, has_canary=True) == {"stable": 95, "canary": 5}
    assert track_weights(0, has_canary=False) == {"stable": 100}
    assert track_weight("canary", 30, has_canary=False) == 0


@pytest.mark.parametrize(
    ("canary", "expected"),
    [
        (None, {"stable": 100}),
        ({"weight": 5}, {"stable": 95, "canary": 5}),
        ({"weight": 5, "abort": True}, {"stable": 100, "canary": 0}),
        ({"weight": 5, "promote": True}, {"stable": 0, "canary": 100}),
        # the disagreement issue 16 found: a stepped canary has not reached setWeight 20 yet
        ({"steps": [{"pause": {}}, {"setWeight": 20}]}, {"stable": 100, "canary": 0}),
        ({"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 20}]}, {"stable": 90, "canary": 10}),
    ],
)
def test_effective_weights_of_a_fresh_rollout(
    canary: dict[str, object] | None, expected: dict[str, int]
) -> None:
    spec = CanarySpec.model_validate(canary) if canary is not None else None
    assert effective_weights(spec, None, NOW) == expected


@pytest.mark.parametrize("value", [-1, 101, 2.5, "x", True, None])
def test_parse_weight_refuses_what_is_not_0_to_100(value: object) -> None:
    with pytest.raises(WeightError):
        parse_weight(value)


def test_parse_weight_accepts_bounds() -> None:
    assert (parse_weight(0), parse_weight(100), parse_weight("7")) == (0, 100, 7)
