"""What every strategy shares: feature arrays in, signals (side, strength, stop, target) out.

A strategy is a pure function of features. `signals()` evaluates it over a whole frame (backtests,
walk-forward); `RollingStrategy` evaluates the same compiled rule on a fixed-size window of the
latest bars (the live agent). Both call one `rule_at` per bar, so they agree exactly (tested).

Stops and targets are ATR multiples from the bar's close: `stop = close - side * stop_atr * atr14`,
`target = close + side * target_atr * atr14`; the engine re-anchors the distances on the fill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
import numpy.typing as npt

from apextrader.contracts.payloads import StrategyName

if TYPE_CHECKING:  # polars (~35 MB RSS) is imported where a frame is built or read: docs/performance.md
    import polars as pl

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]

#: Columns a strategy reads (bars + the features of `apextrader.quant.indicators`).
INPUT_COLUMNS: Final = ("open", "high", "low", "close", "volume", "atr14", "rsi14", "ema200", "cvd")
#: Features that must be present (not NaN) once warmed up; CVD is never null.
REQUIRED_FEATURES: Final = ("atr14", "rsi14", "cvd")


class StrategyParams(Protocol):
    @property
    def enabled(self) -> bool: ...
    @property
    def stop_atr(self) -> float: ...
    @property
    def target_atr(self) -> float: ...


@dataclass(frozen=True)
class FeatureArrays:
    """Contiguous float64 columns; NaN where a feature is still warming up."""

    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    atr14: F64
    rsi14: F64
    ema200: F64
    cvd: F64

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> FeatureArrays:
        import polars as pl

        missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"features frame lacks column(s) {', '.join(missing)}")
        cols = {
            c: np.ascontiguousarray(frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy(), dtype=np.float64)
            for c in INPUT_COLUMNS
        }
        return cls(**cols)

    def __len__(self) -> int:
        return int(self.close.shape[0])


#: The per-bar rule: (features, t, params) -> (side, strength); reads bars <= t only.
RuleAt = Callable[[FeatureArrays, int, StrategyParams], tuple[int, float]]
#: The same rule over every bar: (features, params) -> (side[], strength[]).
RuleAll = Callable[[FeatureArrays, StrategyParams], tuple[I8, F64]]


@dataclass(frozen=True)
class Strategy:
    """One strategy: its name, its spec parameters' type and its compiled rule."""

    name: StrategyName
    params_type: type
    rule_at: RuleAt
    rule_all: RuleAll
    #: Bars the rule looks back, including the current one (the live window's size).
    window: Callable[[StrategyParams], int]


@dataclass(frozen=True)
class StrategySignals:
    """Per bar: side (+1 long, -1 short, 0 none), strength in [0, 1], stop/target distances."""

    side: I8
    strength: F64
    stop_distance: F64
    target_distance: F64


@dataclass
class _Buffers:
    size: int
    count: int = 0
    data: dict[str, F64] = field(default_factory=dict)


def signals(strategy: Strategy, features: FeatureArrays, params: StrategyParams) -> StrategySignals:
    """Evaluate `strategy` on every bar (vectorised over the frame)."""
    n = len(features)
    if not params.enabled:
        zeros = np.zeros(n)
        return StrategySignals(np.zeros(n, dtype=np.int8), zeros, zeros.copy(), zeros.copy())
    side, strength = strategy.rule_all(features, params)
    atr = features.atr14
    on = side != 0
    stop = np.where(on, params.stop_atr * atr, np.nan)
    target = np.where(on, params.target_atr * atr, np.nan)
    return StrategySignals(side, strength, stop, target)


@dataclass(frozen=True)
class Signal:
    """One bar's entry signal (what `signal.proposed` carries)."""

    side: int
    strength: float
    price: float
    stop: float
    target: float
    atr: float


class RollingStrategy:
    """The live path: a fixed window of the latest bars, one `update` per closed bar (O(window))."""

    def __init__(self, strategy: Strategy, params: StrategyParams) -> None:
        self.strategy = strategy
        self.params = params
        size = strategy.window(params)
        self._buf = _Buffers(size=size, data={c: np.full(size, np.nan) for c in INPUT_COLUMNS})
        self.last_time_ms: int | None = None

    def update(self, time_ms: int, values: dict[str, float | None]) -> Signal | None:
        """Add a closed bar (`INPUT_COLUMNS` values; None = NaN); the entry signal at it, if any.

        Idempotent by bar time: a bar at or before the last one is ignored (redeliveries)."""
        if self.last_time_ms is not None and time_ms <= self.last_time_ms:
            return None
        self.last_time_ms = time_ms
        buf = self._buf
        for name, arr in buf.data.items():
            value = values.get(name)
            x = np.nan if value is None else float(value)
            if buf.count < buf.size:
                arr[buf.count] = x
            else:
                arr[:-1] = arr[1:]
                arr[-1] = x
        buf.count = min(buf.count + 1, buf.size)
        if not self.params.enabled:
            return None
        window = FeatureArrays(**{k: v[: buf.count] for k, v in buf.data.items()})
        side, strength = self.strategy.rule_at(window, buf.count - 1, self.params)
        if side == 0:
            return None
        close = float(window.close[-1])
        atr = float(window.atr14[-1])
        return Signal(
            side=side,
            strength=strength,
            price=close,
            stop=close - side * self.params.stop_atr * atr,
            target=close + side * self.params.target_atr * atr,
            atr=atr,
        )
