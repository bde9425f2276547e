"""Mean reversion: the close outside its Bollinger band (`bb_period`, `bb_std` population standard
deviations) with RSI(14) beyond `rsi_low`/`rsi_high` is faded toward the mean; with `trend_filter`
longs only above EMA 200 and shorts only below it. Stop/target: ATR multiples."""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt

from apextrader.contracts.spec import MeanReversionParams
from apextrader.quant.strategies._kernels import mean_reversion_all, mean_reversion_at
from apextrader.quant.strategies.base import FeatureArrays, Strategy, StrategyParams


def _p(params: StrategyParams) -> MeanReversionParams:
    return cast(MeanReversionParams, params)


def _at(f: FeatureArrays, t: int, params: StrategyParams) -> tuple[int, float]:
    p = _p(params)
    side, strength = mean_reversion_at(
        f.close, f.rsi14, f.ema200, f.atr14, t,
        p.bb_period, p.bb_std, p.rsi_low, p.rsi_high, p.trend_filter,
    )  # fmt: skip
    return int(side), float(strength)


def _all(f: FeatureArrays, params: StrategyParams) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    p = _p(params)
    return mean_reversion_all(  # type: ignore[no-any-return]
        f.close, f.rsi14, f.ema200, f.atr14,
        p.bb_period, p.bb_std, p.rsi_low, p.rsi_high, p.trend_filter,
    )  # fmt: skip


MEAN_REVERSION = Strategy(
    name="mean_reversion",
    params_type=MeanReversionParams,
    rule_at=_at,
    rule_all=_all,
    window=lambda params: _p(params).bb_period + 1,
)
