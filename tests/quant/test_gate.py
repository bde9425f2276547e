"""The walk-forward gate's false-positive rate and power, measured over seeds (not timed).

* Martingale data (`source.model: martingale`): no strategy has an edge, so every acceptance is a
  false positive. Goal: at most 5 % of (strategy, symbol) pairs, with costs (the real setting) and
  without (the sharp null: true expectancy exactly 0).
* Planted structure of known strength (`source.model: regimes`): trend persistence of 0.2 bar
  volatilities per bar for breakout, a pull of 0.1 per bar to the regime's anchor for mean
  reversion. Goal: the matching strategy accepted in at least 90 % of seeds; the mismatched one
  (breakout against mean reversion) and inverted signals (a negative edge) never.

`pytest -s tests/quant/test_gate.py` prints the measured rates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from apextrader.contracts.spec import RegimesSpec, TradingPipelineSpec
from apextrader.quant.backtest.engine import BacktestConfig, to_arrays
from apextrader.quant.backtest.runner import run_walk_forward
from apextrader.quant.indicators import compute_features
from apextrader.quant.significance import t_quantile, t_sf
from apextrader.quant.strategies import STRATEGIES, FeatureArrays, params_for
from apextrader.quant.synthetic import generate
from apextrader.quant.walkforward import expand_grid, plan_folds, walk_forward
from tests.quant.test_walkforward import inverted

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
#: Mean reversion without its EMA-200 filter trades often enough to be judged (a strategy setting,
#: not the generator's: the generator never knows the strategies).
BASE: dict[str, Any] = {
    "symbols": SYMBOLS,
    "timeframe": "15m",
    "strategies": {"meanReversion": {"trendFilter": False}},
}
TREND = RegimesSpec.model_validate(
    {
        "meanBars": 500,
        "trend": {"share": 1, "drift": 0.2},
        "meanReversion": {"share": 0},
        "random": {"share": 0},
    }
)
REVERSION = RegimesSpec.model_validate(
    {
        "meanBars": 500,
        "trend": {"share": 0},
        "meanReversion": {"share": 1, "pull": 0.1},
        "random": {"share": 0},
    }
)


def spec_with(**backtest: Any) -> TradingPipelineSpec:
    return TradingPipelineSpec.model_validate({**BASE, "backtest": backtest})


def acceptance(
    spec: TradingPipelineSpec, structure: RegimesSpec | None, seeds: range, bars: int
) -> dict[str, list[bool]]:
    """Per strategy, the verdicts of every (seed, symbol) of an offline 5-fold walk-forward."""
    out: dict[str, list[bool]] = {}
    for seed in seeds:
        frames = generate(spec.symbols, bars, seed=seed, timeframe=spec.timeframe, structure=structure)
        for v in run_walk_forward(frames, spec, 5).stats.verdicts:
            out.setdefault(v["strategy"], []).append(v["accepted"])
            assert v["method"] == "oos-t-bonferroni" and v["trials"] == 4  # the default grids' points
    return out


def rates(accepted: dict[str, list[bool]]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in accepted.items()}


def test_t_distribution_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")  # dev dependency (vectorbt's); the agents need none
    for dof in (1, 2, 4, 9, 30, 200):
        for t in (-3.0, -0.5, 0.0, 0.7, 2.0, 6.0):
            assert t_sf(t, dof) == pytest.approx(stats.t.sf(t, dof), rel=1e-9, abs=1e-14)
        for p in (0.9, 0.95, 0.9875, 0.999):
            assert t_quantile(p, dof) == pytest.approx(stats.t.ppf(p, dof), rel=1e-9)


@pytest.mark.parametrize("costs", [{}, {"feesBps": 0, "slippageBps": 0}], ids=["with-costs", "cost-free"])
def test_martingale_false_positive_rate(costs: dict[str, float]) -> None:
    accepted = acceptance(spec_with(**costs), None, range(1000, 1030), 3000)
    pairs = sum(len(v) for v in accepted.values())
    fpr = sum(sum(v) for v in accepted.values()) / pairs
    print(f"\nmartingale ({'cost-free' if costs else 'with costs'}): false-positive rate {fpr:.1%} "
          f"of {pairs} (strategy, symbol) pairs; per strategy {rates(accepted)}")  # fmt: skip
    assert pairs == 2 * 30 * len(SYMBOLS)
    assert fpr <= 0.05


def test_live_gate_window_false_positive_rate() -> None:
    """The live record's shape (300 in-sample + 3 x 100 out-of-sample bars, refreshed every 20 bars)
    on the martingale, on the example's own strategy settings."""
    spec = TradingPipelineSpec.model_validate({"symbols": SYMBOLS[:2], "timeframe": "15m"})
    bt, cfg = spec.backtest, BacktestConfig.from_spec(spec)
    plan = plan_folds(600, bt.folds, bt.in_sample_bars, bt.out_of_sample_bars, bt.anchored)
    verdicts = []
    for seed in range(1, 5):
        for frame in generate(spec.symbols, 1400, seed=seed, timeframe="15m").values():
            feats = compute_features(frame)
            arrays, farrays = to_arrays(feats), FeatureArrays.from_frame(feats)
            for end in range(800, 1401, 40):
                window = FeatureArrays(**{k: v[end - 600 : end] for k, v in farrays.__dict__.items()})
                for name, strategy in STRATEGIES.items():
                    key = "meanReversion" if name == "mean_reversion" else name
                    grid = expand_grid(strategy, params_for(spec, name), bt.grid.get(key, {}))
                    result = walk_forward(arrays.window(end - 600, end), window, strategy, grid, plan, cfg,
                                          bt.min_trades, bt.min_expectancy, significance=bt.significance,
                                          workers=1)  # fmt: skip
                    verdicts.append(result.verdict.accepted)
    fpr = float(np.mean(verdicts))
    print(f"\nlive-shaped gate on the martingale: {fpr:.1%} of {len(verdicts)} records accept")
    assert len(verdicts) == 4 * 2 * 16 * 2 and fpr <= 0.05


def test_power_on_planted_trend_and_mean_reversion() -> None:
    trend = rates(acceptance(spec_with(), TREND, range(1, 11), 5000))
    reversion = rates(acceptance(spec_with(), REVERSION, range(1, 11), 10000))
    print(f"\nplanted trend (drift 0.2 sigma/bar): acceptance {trend}")
    print(f"planted mean reversion (pull 0.1/bar): acceptance {reversion}")
    assert trend["breakout"] >= 0.9
    assert reversion["mean_reversion"] >= 0.9
    assert reversion["breakout"] == 0.0  # breakouts against a pull back to the anchor lose


def test_negative_edge_stays_rejected() -> None:
    """Breakout signals inverted on the trend market: the edge of the power test, turned negative."""
    spec = spec_with()
    rejected = 0
    for seed in range(1, 6):
        for frame in generate(SYMBOLS, 5000, seed=seed, timeframe="15m", structure=TREND).values():
            feats = compute_features(frame)
            strategy = inverted(STRATEGIES["breakout"])
            grid = expand_grid(strategy, params_for(spec, "breakout"), spec.backtest.grid["breakout"])
            plan = plan_folds(5000, 5, 1000, 800, False)
            cfg = BacktestConfig.from_spec(spec, close_at_end=True)
            v = walk_forward(to_arrays(feats), FeatureArrays.from_frame(feats), strategy, grid, plan, cfg,
                             spec.backtest.min_trades, significance=spec.backtest.significance).verdict  # fmt: skip
            assert v.statistic is not None and v.statistic < 0 and v.trades >= 50
            rejected += not v.accepted
    assert rejected == 5 * len(SYMBOLS)
