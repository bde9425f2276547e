"""Walk-forward: fold plans, grid expansion, no look-ahead (truncation), and the gate rejects a
negative-edge strategy while passing one with a real edge."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from apextrader.contracts.spec import BreakoutParams
from apextrader.quant.backtest.engine import BacktestConfig, to_arrays
from apextrader.quant.indicators import compute_features
from apextrader.quant.strategies import STRATEGIES, FeatureArrays
from apextrader.quant.strategies.base import Strategy
from apextrader.quant.walkforward import (
    Fold,
    WalkForwardError,
    choose,
    expand_grid,
    plan_folds,
    walk_forward,
)
from tests.quant.bars import random_bars

BREAKOUT = STRATEGIES["breakout"]
CFG = BacktestConfig(sizing="risk", risk_per_trade=0.01, max_notional=3.0, fees_bps=5, slippage_bps=2)
GRID = expand_grid(BREAKOUT, BreakoutParams(), {"lookback": [10, 20], "volumeFactor": [1.0, 1.5]})


def inverted(strategy: Strategy) -> Strategy:
    """Every long becomes a short and vice versa (same strength, stops and targets)."""
    return Strategy(
        name=strategy.name,
        params_type=strategy.params_type,
        rule_at=lambda f, t, p: (-strategy.rule_at(f, t, p)[0], strategy.rule_at(f, t, p)[1]),
        rule_all=lambda f, p: (-strategy.rule_all(f, p)[0], strategy.rule_all(f, p)[1]),
        window=strategy.window,
    )


def run(bars: pl.DataFrame, strategy: Strategy, plan: list[Fold], min_trades: int = 20):  # type: ignore[no-untyped-def]
    feats = compute_features(bars)
    return walk_forward(
        to_arrays(feats), FeatureArrays.from_frame(feats), strategy, GRID, plan, CFG, min_trades
    )


def test_plan_rolling_and_anchored() -> None:
    rolling = plan_folds(1000, 3, 400, 200, anchored=False)
    assert [(f.is_start, f.is_end, f.oos_end) for f in rolling] == [
        (0, 400, 600),
        (200, 600, 800),
        (400, 800, 1000),
    ]
    anchored = plan_folds(1000, 3, 400, 200, anchored=True)
    assert [f.is_start for f in anchored] == [0, 0, 0] and anchored[-1].oos_end == 1000
    with pytest.raises(WalkForwardError, match="needs 1000 bars"):
        plan_folds(999, 3, 400, 200, anchored=False)


def test_grid_expansion_skips_invalid_points_and_names_unknown_keys() -> None:
    mr = STRATEGIES["mean_reversion"]
    from apextrader.contracts.spec import MeanReversionParams

    points = expand_grid(mr, MeanReversionParams(), {"rsiLow": [20.0, 60.0], "bb_std": [2.0, 3.0]})
    assert len(points) == 2  # rsiLow 60 is invalid (< 50 required)
    with pytest.raises(WalkForwardError, match="no valid point"):
        expand_grid(mr, MeanReversionParams(), {"rsiLow": [60.0]})
    with pytest.raises(WalkForwardError, match="unknown parameter"):
        expand_grid(mr, MeanReversionParams(), {"rsi_lo": [20.0]})


def test_choice_ignores_everything_after_the_in_sample_end() -> None:
    bars = random_bars(6000, seed=3, ar=0.3)
    plan = plan_folds(6000, 3, 2000, 1000, anchored=False)
    full = run(bars, BREAKOUT, plan)
    for fold, result in zip(plan, full.folds, strict=True):
        cut = bars.head(fold.is_end)
        # the future is scrambled: prices after the in-sample end are replaced by another walk
        other = random_bars(6000 - fold.is_end, seed=99, start_price=float(bars["close"][fold.is_end - 1]))
        scrambled = pl.concat([cut, other.with_columns(bars["timestamp"].tail(6000 - fold.is_end))])
        chosen = []
        for data in (cut, scrambled, bars):
            feats = compute_features(data)
            idx = choose(to_arrays(feats), FeatureArrays.from_frame(feats), BREAKOUT, GRID, fold, CFG, 20)
            chosen.append(idx)
        assert chosen[0] == chosen[1] == chosen[2] is not None
        assert result.params == GRID[chosen[0]]  # walk_forward made the same choice
    # a fold's out-of-sample result depends on nothing after its end either
    last_but_one = plan[1]
    cut_run = run(bars.head(last_but_one.oos_end), BREAKOUT, plan[:2])
    np.testing.assert_array_equal(cut_run.folds[1].oos.trades, full.folds[1].oos.trades)  # type: ignore[union-attr]


def test_gate_rejects_negative_edge_and_passes_a_real_edge() -> None:
    """On autocorrelated returns breakouts have an edge; the same signals inverted lose it plus fees."""
    bars = random_bars(10000, seed=2, ar=0.5)
    plan = plan_folds(10000, 4, 2000, 2000, anchored=False)
    good = run(bars, BREAKOUT, plan).verdict
    bad = run(bars, inverted(BREAKOUT), plan).verdict
    assert good.accepted and good.expectancy is not None and good.expectancy > 0 and good.confidence > 0.99
    assert not bad.accepted and bad.expectancy is not None and bad.expectancy < 0
    assert bad.reason.startswith("not significant") and bad.trades >= 20
    assert bad.statistic is not None and bad.threshold is not None and bad.statistic < 0 < bad.threshold
    assert good.statistic is not None and good.threshold is not None and good.statistic > good.threshold


def test_too_few_trades_is_rejected_with_the_count() -> None:
    bars = random_bars(3000, seed=4)
    verdict = run(bars, BREAKOUT, plan_folds(3000, 2, 1000, 1000, False), min_trades=10_000).verdict
    assert not verdict.accepted and "need 10000" in verdict.reason
