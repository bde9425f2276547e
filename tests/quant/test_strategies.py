"""Strategies: vectorised and bar-by-bar (live) signals are identical; each rule does what it says."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from apextrader.contracts.spec import BreakoutParams, MeanReversionParams
from apextrader.quant.indicators import compute_features
from apextrader.quant.strategies import STRATEGIES, FeatureArrays, RollingStrategy, signals
from tests.quant.bars import random_bars

PARAMS = {
    "breakout": [BreakoutParams(), BreakoutParams(lookback=10, volume_factor=0.8, cvd_confirm=True)],
    "mean_reversion": [
        MeanReversionParams(),
        MeanReversionParams(rsi_low=40, rsi_high=60, bb_std=1.5, trend_filter=False, bb_period=30),
    ],
}


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    return compute_features(random_bars(4000, seed=11))


@pytest.mark.parametrize(("name", "i"), [(n, i) for n in PARAMS for i in range(2)])
def test_live_window_equals_vectorised(features: pl.DataFrame, name: str, i: int) -> None:
    strategy, params = STRATEGIES[name], PARAMS[name][i]  # type: ignore[index]
    batch = signals(strategy, FeatureArrays.from_frame(features), params)
    live = RollingStrategy(strategy, params)
    side = np.zeros(features.height, dtype=np.int8)
    strength = np.zeros(features.height)
    stop = np.full(features.height, np.nan)
    ts = features["timestamp"].dt.epoch("ms").to_list()
    for t, row in enumerate(features.iter_rows(named=True)):
        sig = live.update(ts[t], row)
        assert live.update(ts[t], row) is None  # a redelivered bar is ignored
        if sig is not None:
            side[t], strength[t], stop[t] = sig.side, sig.strength, sig.price - sig.stop
    assert np.array_equal(side, batch.side)
    assert (np.abs(batch.side) > 0).sum() >= 5  # the comparison covers real signals
    assert np.array_equal(strength, batch.strength)
    on = side != 0
    np.testing.assert_allclose(stop[on], side[on] * batch.stop_distance[on], rtol=1e-12)


def test_breakout_rule(features: pl.DataFrame) -> None:
    p = BreakoutParams(lookback=20, volume_factor=1.0)
    f = FeatureArrays.from_frame(features)
    s = signals(STRATEGIES["breakout"], f, p)
    for t in np.flatnonzero(s.side):
        prior_high = f.high[t - 20 : t].max()
        prior_low = f.low[t - 20 : t].min()
        assert f.volume[t] > f.volume[t - 20 : t].mean() * (1 - 1e-12)
        assert (f.close[t] > prior_high) if s.side[t] > 0 else (f.close[t] < prior_low)
        assert 0.5 <= s.strength[t] <= 1.0
        assert s.stop_distance[t] == pytest.approx(p.stop_atr * f.atr14[t])
    # nothing in the first `lookback` bars, nothing without the volume condition
    assert not s.side[:20].any()
    quiet = signals(STRATEGIES["breakout"], f, BreakoutParams(volume_factor=100.0))
    assert not quiet.side.any()


def test_mean_reversion_rule_and_trend_filter(features: pl.DataFrame) -> None:
    f = FeatureArrays.from_frame(features)
    p = MeanReversionParams(rsi_low=40, rsi_high=60, bb_std=1.5)
    s = signals(STRATEGIES["mean_reversion"], f, p)
    assert s.side.any()
    for t in np.flatnonzero(s.side):
        win = f.close[t - 19 : t + 1]
        z = (f.close[t] - win.mean()) / win.std()
        if s.side[t] > 0:
            assert z < -1.5 and f.rsi14[t] < 40 and f.close[t] > f.ema200[t]
        else:
            assert z > 1.5 and f.rsi14[t] > 60 and f.close[t] < f.ema200[t]
    unfiltered = signals(STRATEGIES["mean_reversion"], f, p.model_copy(update={"trend_filter": False}))
    assert (unfiltered.side != 0).sum() > (s.side != 0).sum()


def test_disabled_strategy_emits_nothing(features: pl.DataFrame) -> None:
    f = FeatureArrays.from_frame(features)
    assert not signals(STRATEGIES["breakout"], f, BreakoutParams(enabled=False)).side.any()
