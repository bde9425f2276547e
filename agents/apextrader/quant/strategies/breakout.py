"""Breakout: the close leaves the Donchian channel of the prior `lookback` bars (long above the
high, short below the low) on volume above `volume_factor` x its prior `volume_lookback`-bar mean,
optionally with CVD moving the same way (taker flow confirms). Stop/target: ATR multiples."""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt

from apextrader.contracts.spec import BreakoutParams
from apextrader.quant.strategies._kernels import breakout_all, breakout_at
from apextrader.quant.strategies.base import FeatureArrays, Strategy, StrategyParams


def _p(params: StrategyParams) -> BreakoutParams:
    return cast(BreakoutParams, params)


def _at(f: FeatureArrays, t: int, params: StrategyParams) -> tuple[int, float]:
    p = _p(params)
    side, strength = breakout_at(
        f.high, f.low, f.close, f.volume, f.cvd, f.atr14, t,
        p.lookback, p.volume_lookback, p.volume_factor, p.cvd_confirm,
    )  # fmt: skip
    return int(side), float(strength)


def _all(f: FeatureArrays, params: StrategyParams) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    p = _p(params)
    return breakout_all(  # type: ignore[no-any-return]
        f.high, f.low, f.close, f.volume, f.cvd, f.atr14,
        p.lookback, p.volume_lookback, p.volume_factor, p.cvd_confirm,
    )  # fmt: skip


BREAKOUT = Strategy(
    name="breakout",
    params_type=BreakoutParams,
    rule_at=_at,
    rule_all=_all,
    window=lambda params: max(_p(params).lookback, _p(params).volume_lookback) + 1,
)
