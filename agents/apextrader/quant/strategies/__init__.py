"""Strategies as pure functions of features: breakout and mean reversion, long and short.

`STRATEGIES[name]` is the strategy; `params_for(spec, name)` its parameters from a (track) spec
(`contracts.track_spec(spec, track)` gives a track's spec).
"""

from __future__ import annotations

from typing import Final

from apextrader.contracts.payloads import StrategyName
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.quant.strategies.base import (
    FeatureArrays,
    RollingStrategy,
    Signal,
    Strategy,
    StrategyParams,
    StrategySignals,
    signals,
)
from apextrader.quant.strategies.breakout import BREAKOUT
from apextrader.quant.strategies.mean_reversion import MEAN_REVERSION

STRATEGIES: Final[dict[StrategyName, Strategy]] = {"breakout": BREAKOUT, "mean_reversion": MEAN_REVERSION}


def params_for(spec: TradingPipelineSpec, name: StrategyName) -> StrategyParams:
    return spec.strategies.breakout if name == "breakout" else spec.strategies.mean_reversion


__all__ = [
    "STRATEGIES",
    "FeatureArrays",
    "RollingStrategy",
    "Signal",
    "Strategy",
    "StrategyParams",
    "StrategySignals",
    "params_for",
    "signals",
]
