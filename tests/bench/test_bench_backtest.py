"""Backtest benchmarks (numbers printed, never asserted on time). Smoke size by default;
`APEX_BENCH_FULL=1` (make bench) runs the issue's sizes:

* signal backtest on 1,000,000 bars next to vectorbt `Portfolio.from_signals` on the same signals,
  both after a warm-up run (JIT compiled), best of 3; goal <= 1.0x vectorbt's time;
* walk-forward, 10 folds x 100 parameter sets on 1,000,000 bars; goal < 60 s and < 2 GB.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import polars as pl
import psutil
import pytest

from apextrader.contracts.spec import BreakoutParams
from apextrader.quant.backtest import BacktestConfig
from apextrader.quant.backtest.engine import run_arrays, to_arrays
from apextrader.quant.indicators import compute_features
from apextrader.quant.strategies import STRATEGIES, FeatureArrays
from apextrader.quant.walkforward import expand_grid, plan_folds, walk_forward
from tests.quant.bars import random_bars, random_signals

pytestmark = pytest.mark.bench
FULL = os.environ.get("APEX_BENCH_FULL") == "1"
BARS = 1_000_000 if FULL else 20_000


def best_of(fn: Callable[[], object], runs: int = 3) -> float:
    fn()  # warm-up: numba compilation and caches
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class RssSampler:
    """Peak resident memory of this process while a block runs (sampled every 10 ms)."""

    def __enter__(self) -> RssSampler:
        self.proc = psutil.Process()
        self.baseline = self.peak = self.proc.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss / 2**20)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_bench_signal_backtest_vs_vectorbt() -> None:
    vbt = pytest.importorskip("vectorbt")
    bars = random_bars(BARS, seed=1, vol=0.002)
    sig = random_signals(BARS, seed=2, p=0.01)
    frame = pl.concat([bars, sig], how="horizontal")
    cfg = BacktestConfig(fees_bps=5, slippage_bps=2)
    arrays = to_arrays(frame)

    idx = pd.RangeIndex(BARS)
    close = pd.Series(bars["close"].to_numpy(), index=idx)
    open_ = pd.Series(bars["open"].to_numpy(), index=idx)
    # the same argument types as the cross-check test, so one process compiles vectorbt once
    high = pd.Series(bars["high"].to_numpy(), index=idx)
    low = pd.Series(bars["low"].to_numpy(), index=idx)
    shifted = {c: pd.Series(sig[c].to_numpy(), index=idx).shift(1, fill_value=False) for c in sig.columns}

    def ours() -> object:
        return run_arrays(arrays, cfg)

    def theirs() -> object:
        return vbt.Portfolio.from_signals(
            close=close, entries=shifted["entry_long"], exits=shifted["exit_long"],
            short_entries=shifted["entry_short"], short_exits=shifted["exit_short"], price=open_,
            open=open_, high=high, low=low, fees=5e-4, slippage=2e-4, size=1.0, size_type="percent",
            init_cash=cfg.capital, upon_opposite_entry="close",
        ).value()  # fmt: skip

    t_ours, t_vbt = best_of(ours), best_of(theirs)
    t_ours_frames = best_of(lambda: run_arrays(to_arrays(frame), cfg))
    eq_ours, eq_vbt = run_arrays(arrays, cfg).equity, np.asarray(theirs())
    print(
        f"\n[bench] signal backtest, {BARS:,} bars: apextrader {t_ours * 1e3:.1f} ms "
        f"(with frame->array conversion {t_ours_frames * 1e3:.1f} ms), vectorbt from_signals+value "
        f"{t_vbt * 1e3:.1f} ms, ratio {t_ours / t_vbt:.3f}x (goal <= 1.0x); "
        f"max rel equity diff {np.max(np.abs(eq_ours / eq_vbt - 1)):.2e}"
    )
    np.testing.assert_allclose(eq_ours, eq_vbt, rtol=1e-6)  # the two runs did the same work


def test_bench_walk_forward() -> None:
    bars = random_bars(BARS, seed=3, vol=0.002)
    t0 = time.perf_counter()
    feats = compute_features(bars)
    t_features = time.perf_counter() - t0
    grid_spec = (
        {"lookback": [10, 15, 20, 25, 30, 35, 40, 45, 50, 55], "volumeFactor": [0.8, 1.0, 1.2, 1.5, 2.0],
         "stopAtr": [1.5, 2.5]}
        if FULL else {"lookback": [10, 20], "volumeFactor": [1.0, 1.5]}
    )  # fmt: skip
    strategy = STRATEGIES["breakout"]
    grid = expand_grid(strategy, BreakoutParams(), grid_spec)
    folds = 10
    oos = BARS // (folds + 3)
    plan = plan_folds(BARS, folds, 3 * oos, oos, anchored=False)
    arrays, farrays = to_arrays(feats), FeatureArrays.from_frame(feats)
    cfg = BacktestConfig(sizing="risk", risk_per_trade=0.005, max_notional=1.5)
    walk_forward(arrays, farrays, strategy, grid[:1], plan[:1], cfg, 5)  # warm-up (JIT)
    for workers in (1, 2):
        with RssSampler() as mem:
            t0 = time.perf_counter()
            result = walk_forward(arrays, farrays, strategy, grid, plan, cfg, 5, workers=workers)
            elapsed = time.perf_counter() - t0
        print(
            f"\n[bench] walk-forward, {BARS:,} bars, {folds} folds x {len(grid)} parameter sets, "
            f"{workers} thread(s): {elapsed:.2f} s (goal < 60 s); features {t_features:.2f} s; process RSS "
            f"peak {mem.peak:.0f} MB, +{mem.peak - mem.baseline:.0f} MB during the run (goal < 2048 MB); "
            f"OOS trades {result.verdict.trades}, verdict: {result.verdict.reason}"
        )
    assert len(result.folds) == folds
