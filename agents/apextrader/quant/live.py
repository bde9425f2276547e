"""The live side of the strategies and the walk-forward: features events in, rolling state out.

`feature_values` turns a `features.computed` payload into a strategy's inputs; `BarBuffer` keeps
the latest bars of one symbol (idempotent by bar time) for the backtester's rolling walk-forward
record (`walk_forward_record`). Both agents use these, so they read events the same way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from apextrader.contracts.payloads import FeaturesComputed, StrategyName
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.quant.backtest.engine import BacktestArrays, BacktestConfig
from apextrader.quant.strategies import STRATEGIES, FeatureArrays, params_for
from apextrader.quant.strategies.base import INPUT_COLUMNS
from apextrader.quant.walkforward import Verdict, WalkForwardError, expand_grid, plan_folds, walk_forward


def feature_values(data: FeaturesComputed) -> dict[str, float | None]:
    bar, f = data.bar, data.features
    return {
        "open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close, "volume": bar.volume,
        "atr14": f.atr14, "rsi14": f.rsi14, "ema200": f.ema200, "cvd": f.cvd,
    }  # fmt: skip


def nan_message(data: FeaturesComputed) -> str | None:
    """Why the event is broken when a feature is NaN; None is an indicator's warm-up (or a feature
    engineer still rebuilding after a restart), so it only means "no signal yet"."""
    broken = [k for k, v in feature_values(data).items() if v is not None and v != v]
    if not broken:
        return None
    return f"NaN feature(s) {', '.join(broken)} at {data.symbol} {data.bar.open_time.isoformat()}"


def bar_time_ms(data: FeaturesComputed) -> int:
    return int(data.bar.open_time.timestamp() * 1000)


class BarBuffer:
    """The last `size` closed bars (with features) of one symbol; older or repeated bars are ignored."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.times: deque[int] = deque(maxlen=size)
        self.rows: deque[tuple[float, ...]] = deque(maxlen=size)
        self.added = 0  # bars accepted since start (drives the refresh cadence)

    def add(self, time_ms: int, values: dict[str, float | None]) -> bool:
        if self.times and time_ms <= self.times[-1]:
            return False
        self.times.append(time_ms)
        self.rows.append(tuple(np.nan if values.get(c) is None else float(values[c]) for c in INPUT_COLUMNS))  # type: ignore[arg-type]
        self.added += 1
        return True

    def __len__(self) -> int:
        return len(self.rows)

    def copy(self) -> BarBuffer:
        """A frozen copy to compute on in another thread while this one keeps taking bars."""
        out = BarBuffer(self.size)
        out.times.extend(self.times)
        out.rows.extend(self.rows)
        out.added = self.added
        return out

    def arrays(self) -> tuple[BacktestArrays, FeatureArrays]:
        matrix = np.array(self.rows, dtype=np.float64).reshape(-1, len(INPUT_COLUMNS))
        cols = {c: np.ascontiguousarray(matrix[:, j]) for j, c in enumerate(INPUT_COLUMNS)}
        features = FeatureArrays(**cols)
        n = matrix.shape[0]
        no_signal = np.zeros(n, dtype=np.bool_)  # walk_forward puts each grid point's signals in
        bars = BacktestArrays(
            open=cols["open"], high=cols["high"], low=cols["low"], close=cols["close"], funding=np.zeros(n),
            entry_long=no_signal, exit_long=no_signal, entry_short=no_signal, exit_short=no_signal,
            stop_distance=np.full(n, np.nan), target_distance=np.full(n, np.nan),
        )  # fmt: skip
        return bars, features


def bars_needed(spec: TradingPipelineSpec) -> int:
    bt = spec.backtest
    return bt.in_sample_bars + bt.folds * bt.out_of_sample_bars


@dataclass(frozen=True)
class Record:
    """A strategy's rolling walk-forward verdict on one symbol for one track."""

    verdict: Verdict
    bars: int
    as_of_ms: int


def walk_forward_record(buffer: BarBuffer, spec: TradingPipelineSpec, name: StrategyName) -> Record | None:
    """The walk-forward over the buffer's latest bars with the track spec's grid and gate; None while
    the buffer is shorter than the folds need."""
    need = bars_needed(spec)
    if len(buffer) < need:
        return None
    bt = spec.backtest
    bars, features = buffer.arrays()
    start = len(buffer) - need
    bars, features = (
        bars.window(start, len(buffer)),
        FeatureArrays(**{k: v[start:] for k, v in features.__dict__.items()}),
    )
    strategy = STRATEGIES[name]
    key = "meanReversion" if name == "mean_reversion" else name
    try:
        grid = expand_grid(strategy, params_for(spec, name), bt.grid.get(key, {}))
    except WalkForwardError as exc:
        return Record(Verdict(False, None, None, 0, 0.0, str(exc)), need, buffer.times[-1])
    plan = plan_folds(need, bt.folds, bt.in_sample_bars, bt.out_of_sample_bars, bt.anchored)
    result = walk_forward(
        bars, features, strategy, grid, plan, BacktestConfig.from_spec(spec), bt.min_trades, bt.min_expectancy,
        significance=bt.significance,
    )  # fmt: skip
    return Record(result.verdict, need, buffer.times[-1])
