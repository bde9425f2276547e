"""Walk-forward validation: choose parameters in-sample, judge them out-of-sample only.

* **Folds.** `folds` consecutive out-of-sample (OOS) windows of `out_of_sample` bars end at the last
  bar; each fold's in-sample (IS) window is the `in_sample` bars just before its OOS window
  (rolling) or every bar from the start (anchored). Windows never overlap their own OOS.
* **Choice.** Every grid point is backtested on each IS window (engine conventions, positions closed
  at the window's end); the point with the highest IS expectancy among those with at least
  `min_trades` IS trades wins (ties: the first in grid order). A fold with no such point trades
  nothing out-of-sample.
* **No look-ahead.** Signals are computed from causal features (a bar's value uses bars <= it
  only), so the IS backtest of a fold reads nothing after the fold's IS end (tested by truncating
  and by scrambling the data after it).
* **Verdict** from the chosen points' OOS trades of all folds only: accepted when there are at
  least `min_trades` and their t-statistic against `min_expectancy` exceeds the Student-t
  threshold at `1 - significance / trials`, `trials` being the grid points tried
  (`apextrader.quant.significance`; docs/backtest.md). `confidence` is the
  normal-approximation probability that the true expectancy exceeds `min_expectancy`,
  Φ((mean - min) / se), shown for reading only: the test decides.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from apextrader.quant import jit
from apextrader.quant.backtest import kernel
from apextrader.quant.backtest.engine import BacktestArrays, BacktestConfig, run_arrays
from apextrader.quant.significance import METHOD, significance_of
from apextrader.quant.strategies import FeatureArrays, Strategy, StrategyParams, signals

F64 = npt.NDArray[np.float64]


#: Smallest out-of-sample window `auto_plan` makes (fewer bars say nothing about a strategy).
MIN_AUTO_WINDOW = 50


class WalkForwardError(ValueError):
    """Bad walk-forward input (too little data, an empty grid); `reason` is a short word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Fold:
    index: int
    is_start: int
    is_end: int  # exclusive; = oos_start
    oos_start: int
    oos_end: int  # exclusive


def plan_folds(n_bars: int, folds: int, in_sample: int, out_of_sample: int, anchored: bool) -> list[Fold]:
    """Fold windows over `n_bars` bars, the last OOS window ending at the last bar."""
    need = in_sample + folds * out_of_sample
    if folds < 1 or in_sample < 1 or out_of_sample < 1:
        raise WalkForwardError("invalid", "walk-forward needs at least one fold and non-empty windows")
    if n_bars < need:
        raise WalkForwardError(
            "too_short",
            f"walk-forward needs {need} bars ({in_sample} in-sample + {folds} x {out_of_sample} "
            f"out-of-sample), got {n_bars}",
        )
    first = n_bars - folds * out_of_sample
    plan = []
    for k in range(folds):
        oos_start = first + k * out_of_sample
        plan.append(
            Fold(k, 0 if anchored else oos_start - in_sample, oos_start, oos_start, oos_start + out_of_sample)
        )
    return plan


def auto_plan(n_bars: int, folds: int, ratio: float, anchored: bool) -> list[Fold]:
    """Use all bars: OOS windows of n / (folds + ratio) bars, IS windows `ratio` times longer."""
    oos = int(n_bars // (folds + ratio))
    if oos < MIN_AUTO_WINDOW:
        raise WalkForwardError(
            "too_short",
            f"walk-forward needs {MIN_AUTO_WINDOW} bars per out-of-sample window: {folds} folds over "
            f"{n_bars} bars give {oos}; use fewer folds or more data",
        )
    return plan_folds(n_bars, folds, max(1, int(oos * ratio)), oos, anchored)


def expand_grid(
    strategy: Strategy, base: StrategyParams, grid: Mapping[str, Sequence[Any]]
) -> list[StrategyParams]:
    """Every valid combination of `grid` over `base` (spec names, camelCase or snake_case)."""
    params_type: Any = strategy.params_type
    by_alias = {f.alias: name for name, f in params_type.model_fields.items() if f.alias}
    names = {key: by_alias.get(key, key) for key in grid}
    unknown = sorted(k for k, name in names.items() if name not in params_type.model_fields)
    if unknown:
        raise WalkForwardError("grid", f"grid for {strategy.name}: unknown parameter(s) {', '.join(unknown)}")
    keys = list(grid)
    points: list[StrategyParams] = []
    base_values = base.model_dump()  # type: ignore[attr-defined]
    for values in itertools.product(*(grid[k] for k in keys)):
        point = {names[k]: v for k, v in zip(keys, values, strict=True)}
        try:
            points.append(params_type.model_validate({**base_values, **point}))
        except ValidationError:
            continue  # e.g. rsiLow >= 50: not a point of this grid
    if not points:
        raise WalkForwardError("grid", f"grid for {strategy.name} has no valid point")
    return points


@dataclass(frozen=True)
class WindowResult:
    equity: F64
    position: F64
    trades: F64  # kernel trade rows, bar indices relative to the window

    @property
    def returns(self) -> F64:
        return np.asarray(self.trades[:, kernel.T_PNL] / self.trades[:, kernel.T_EQ0], dtype=np.float64)


@dataclass(frozen=True)
class FoldResult:
    fold: Fold
    params: StrategyParams | None
    in_sample_expectancy: float | None
    in_sample_trades: int
    oos: WindowResult | None


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    expectancy: float | None
    expectancy_se: float | None
    trades: int
    confidence: float
    reason: str
    #: The test's t-statistic and threshold (None when undefined: fewer than 2 trades, no spread).
    statistic: float | None = None
    threshold: float | None = None
    trials: int = 1
    method: str = METHOD


@dataclass(frozen=True)
class WalkForwardResult:
    strategy: str
    folds: list[FoldResult]
    verdict: Verdict


def with_signals(
    bars: BacktestArrays, strategy: Strategy, features: FeatureArrays, params: StrategyParams
) -> BacktestArrays:
    sig = signals(strategy, features, params)
    return replace(
        bars,
        entry_long=sig.side > 0,
        entry_short=sig.side < 0,
        stop_distance=sig.stop_distance,
        target_distance=sig.target_distance,
    )


def _window(arrays: BacktestArrays, start: int, stop: int, config: BacktestConfig) -> WindowResult:
    out = run_arrays(arrays.window(start, stop), config)
    return WindowResult(out.equity, out.position, out.trades)


def _score(result: WindowResult, min_trades: int) -> float | None:
    r = result.returns
    return float(r.mean()) if r.size >= min_trades else None


def verdict(
    returns: F64, min_trades: int, min_expectancy: float, significance: float = 0.05, trials: int = 1
) -> Verdict:
    """The gate on the OOS per-trade returns of `trials` parameter sets' walk-forward."""
    n = int(returns.size)
    if n == 0:
        return Verdict(
            False, None, None, 0, 0.0, f"no out-of-sample trades (need {min_trades})", trials=trials
        )
    mean = float(returns.mean())
    se = float(returns.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    if se:
        confidence = 0.5 * (1.0 + math.erf((mean - min_expectancy) / (se * math.sqrt(2.0))))
    else:
        confidence = 1.0 if mean > min_expectancy else 0.0
    test = significance_of(mean, se, n, min_expectancy, significance, trials)
    common = {"statistic": test.statistic, "threshold": test.threshold, "trials": test.trials}

    def result(accepted: bool, reason: str) -> Verdict:
        return Verdict(accepted, mean, se, n, confidence, reason, **common)  # type: ignore[arg-type]

    if n < min_trades:
        return result(False, f"only {n} out-of-sample trades (need {min_trades})")
    if test.statistic is None:
        return result(False, f"out-of-sample returns of {n} trades have no spread: no t-statistic")
    detail = (
        f"t = {test.statistic:.2f} {'>' if test.significant else '<='} {test.threshold:.2f} "
        f"(alpha {significance:g} over {test.trials} trials), expectancy {mean:.6f} over {n} trades"
    )
    return result(test.significant, ("significant: " if test.significant else "not significant: ") + detail)


def walk_forward(
    bars: BacktestArrays,
    features: FeatureArrays,
    strategy: Strategy,
    grid: Sequence[StrategyParams],
    plan: Sequence[Fold],
    config: BacktestConfig,
    min_trades: int,
    min_expectancy: float = 0.0,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    significance: float = 0.05,
) -> WalkForwardResult:
    """Run the folds of `plan`; `bars` holds OHLC + funding (its signal columns are replaced).

    Grid points run on `workers` threads when compiled (the kernels release the GIL); the choice does not
    depend on their order: the best score wins, ties go to the earlier grid point."""
    if not grid:
        raise WalkForwardError("grid", f"grid for {strategy.name} has no valid point")
    cfg = config.model_copy(update={"close_at_end": True})
    best: list[tuple[float, int, int, WindowResult] | None] = [None] * len(plan)
    lock = threading.Lock()

    def better(k: int, score: float, p_index: int) -> bool:
        current = best[k]
        return current is None or score > current[0] or (score == current[0] and p_index < current[1])

    def evaluate(p_index: int) -> None:
        arrays = with_signals(bars, strategy, features, grid[p_index])
        for k, fold in enumerate(plan):
            ins = _window(arrays, fold.is_start, fold.is_end, cfg)
            score = _score(ins, min_trades)
            if score is None:
                continue
            with lock:
                if not better(k, score, p_index):
                    continue
            oos = _window(arrays, fold.oos_start, fold.oos_end, cfg)
            with lock:
                if better(k, score, p_index):
                    best[k] = (score, p_index, ins.trades.shape[0], oos)
        if progress is not None:
            progress(1)

    # Threads pay only when the kernels are compiled (they release the GIL); plain-Python kernels
    # hold it, so more threads would only add switching and a thread stack each.
    n_workers = workers or (min(4, os.cpu_count() or 1) if jit.ENABLED else 1)
    if n_workers <= 1 or len(grid) == 1:
        for p_index in range(len(grid)):
            evaluate(p_index)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(evaluate, range(len(grid))))
    results = []
    for fold, chosen in zip(plan, best, strict=True):
        if chosen is None:
            results.append(FoldResult(fold, None, None, 0, None))
        else:
            score, p_index, n_is, oos = chosen
            results.append(FoldResult(fold, grid[p_index], score, n_is, oos))
    returns = np.concatenate([r.oos.returns for r in results if r.oos is not None] or [np.empty(0)])
    judged = verdict(returns, min_trades, min_expectancy, significance, len(grid))
    return WalkForwardResult(strategy.name, results, judged)


def choose(
    bars: BacktestArrays,
    features: FeatureArrays,
    strategy: Strategy,
    grid: Sequence[StrategyParams],
    fold: Fold,
    config: BacktestConfig,
    min_trades: int,
) -> int | None:
    """The grid index a fold chooses, from its in-sample window alone (what the truncation test probes)."""
    cfg = config.model_copy(update={"close_at_end": True})
    best: tuple[float, int] | None = None
    for p_index, params in enumerate(grid):
        score = _score(
            _window(with_signals(bars, strategy, features, params), fold.is_start, fold.is_end, cfg),
            min_trades,
        )
        if score is not None and (best is None or score > best[0]):
            best = (score, p_index)
    return None if best is None else best[1]
