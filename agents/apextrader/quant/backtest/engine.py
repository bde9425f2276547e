"""Frames in, frames out around the compiled bar loop (conventions: the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.quant.backtest import kernel

if TYPE_CHECKING:  # polars (~35 MB RSS) is imported where a frame is built or read: docs/performance.md
    import polars as pl

F64 = npt.NDArray[np.float64]


class SignalColumns:
    """Column names of a signal frame (booleans; a missing column means false)."""

    ENTRY_LONG: Final = "entry_long"
    EXIT_LONG: Final = "exit_long"
    ENTRY_SHORT: Final = "entry_short"
    EXIT_SHORT: Final = "exit_short"
    #: Optional price distances for the stop and the target of an entry (null/NaN = none).
    STOP_DISTANCE: Final = "stop_distance"
    TARGET_DISTANCE: Final = "target_distance"
    BOOLEANS: Final = (ENTRY_LONG, EXIT_LONG, ENTRY_SHORT, EXIT_SHORT)


class BacktestConfig(BaseModel):
    """Costs, capital and sizing of one run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capital: Annotated[float, Field(gt=0)] = 100_000.0
    fees_bps: Annotated[float, Field(ge=0, lt=10_000)] = 5.0
    slippage_bps: Annotated[float, Field(ge=0, lt=10_000)] = 2.0
    sizing: Literal["percent", "risk"] = "percent"
    #: `percent` sizing: share of cash an entry spends (1.0 = all of it).
    size_pct: Annotated[float, Field(gt=0, le=1)] = 1.0
    #: `risk` sizing: share of equity lost when the stop fills.
    risk_per_trade: Annotated[float, Field(gt=0, le=1)] = 0.005
    #: `risk` sizing: notional cap as a multiple of equity.
    max_notional: Annotated[float, Field(gt=0)] = 1.5
    funding_hours: Annotated[int, Field(ge=1, le=24)] = 8
    close_at_end: bool = False

    @classmethod
    def from_spec(cls, spec: TradingPipelineSpec, *, close_at_end: bool = False) -> BacktestConfig:
        """Strategy backtests: costs from `spec.backtest`, risk sizing from `spec.risk`."""
        return cls(
            capital=spec.capital.amount,
            fees_bps=spec.backtest.fees_bps,
            slippage_bps=spec.backtest.slippage_bps,
            sizing="risk",
            risk_per_trade=spec.risk.risk_per_trade,
            max_notional=spec.risk.max_position_pct * spec.risk.max_leverage,
            close_at_end=close_at_end,
        )


@dataclass(frozen=True)
class BacktestArrays:
    """One symbol's bars and signals as contiguous arrays (what the kernel reads)."""

    open: F64
    high: F64
    low: F64
    close: F64
    funding: F64
    entry_long: npt.NDArray[np.bool_]
    exit_long: npt.NDArray[np.bool_]
    entry_short: npt.NDArray[np.bool_]
    exit_short: npt.NDArray[np.bool_]
    stop_distance: F64
    target_distance: F64

    def __len__(self) -> int:
        return int(self.open.shape[0])

    def window(self, start: int, stop: int) -> BacktestArrays:
        """Bars [start, stop) as views (no copy): a walk-forward fold."""
        return BacktestArrays(**{k: v[start:stop] for k, v in self.__dict__.items()})


@dataclass(frozen=True)
class KernelOutput:
    equity: F64
    position: F64
    trades: F64  # rows of kernel.T_* columns


def trade_schema() -> dict[str, pl.DataType]:
    """The `trades.parquet` columns; a function so polars is imported only by frame builders."""
    import polars as pl

    return {  # instances, so the mapping type-checks
        "entry_time": pl.Datetime("ms", "UTC"),
        "exit_time": pl.Datetime("ms", "UTC"),
        "side": pl.String(),
        "size": pl.Float64(),
        "entry_price": pl.Float64(),
        "exit_price": pl.Float64(),
        "fees": pl.Float64(),
        "funding": pl.Float64(),
        "pnl": pl.Float64(),
        "ret": pl.Float64(),
        "exit_reason": pl.String(),
        "status": pl.String(),
    }


#: `exit_reason` per kernel reason; an open trade has none (its exit is the last close, unrealised).
_REASONS: Final = ("signal", "stop", "target", "end", None)


@dataclass(frozen=True)
class BacktestResult:
    """`equity`: timestamp, equity, position (at each close); `trades`: one row per trade, `status`
    `closed` or `open` (a position left at the end, marked at the last close)."""

    equity: pl.DataFrame
    trades: pl.DataFrame
    capital: float


def _bools(frame: pl.DataFrame, name: str) -> npt.NDArray[np.bool_]:
    import polars as pl

    if name not in frame.columns:
        return np.zeros(frame.height, dtype=np.bool_)
    return np.ascontiguousarray(frame[name].fill_null(False).cast(pl.Boolean).to_numpy(), dtype=np.bool_)


def _floats(frame: pl.DataFrame, name: str, default: float) -> F64:
    import polars as pl

    if name not in frame.columns:
        return np.full(frame.height, default)
    return np.ascontiguousarray(frame[name].cast(pl.Float64).fill_null(default).to_numpy(), dtype=np.float64)


def funding_per_bar(frame: pl.DataFrame, funding_hours: int) -> F64:
    """`funding_rate` at the bars whose open time is a funding time, 0 elsewhere."""
    import polars as pl

    if "funding_rate" not in frame.columns:
        return np.zeros(frame.height)
    period_ms = funding_hours * 3_600_000
    epoch_ms = frame["timestamp"].dt.epoch("ms").to_numpy()
    rate = frame["funding_rate"].cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()
    return np.ascontiguousarray(np.where(epoch_ms % period_ms == 0, rate, 0.0))


def to_arrays(frame: pl.DataFrame, funding_hours: int = 8) -> BacktestArrays:
    """Bars (+ signal columns) as kernel arrays."""
    price = {c: _floats(frame, c, np.nan) for c in ("open", "high", "low", "close")}
    return BacktestArrays(
        open=price["open"],
        high=price["high"],
        low=price["low"],
        close=price["close"],
        funding=funding_per_bar(frame, funding_hours),
        entry_long=_bools(frame, SignalColumns.ENTRY_LONG),
        exit_long=_bools(frame, SignalColumns.EXIT_LONG),
        entry_short=_bools(frame, SignalColumns.ENTRY_SHORT),
        exit_short=_bools(frame, SignalColumns.EXIT_SHORT),
        stop_distance=_floats(frame, SignalColumns.STOP_DISTANCE, np.nan),
        target_distance=_floats(frame, SignalColumns.TARGET_DISTANCE, np.nan),
    )


def run_arrays(arrays: BacktestArrays, config: BacktestConfig) -> KernelOutput:
    """The compiled loop on arrays (the walk-forward calls this directly, many times)."""
    equity, position, trades = kernel.run_kernel(
        arrays.open,
        arrays.high,
        arrays.low,
        arrays.close,
        arrays.funding,
        arrays.entry_long,
        arrays.exit_long,
        arrays.entry_short,
        arrays.exit_short,
        arrays.stop_distance,
        arrays.target_distance,
        config.capital,
        config.fees_bps / 10_000.0,
        config.slippage_bps / 10_000.0,
        kernel.SIZING_PERCENT if config.sizing == "percent" else kernel.SIZING_RISK,
        config.size_pct,
        config.risk_per_trade,
        config.max_notional,
        config.close_at_end,
    )
    return KernelOutput(equity=equity, position=position, trades=trades)


def trades_frame(trades: F64, timestamps: pl.Series) -> pl.DataFrame:
    """Kernel trade rows as the `trades.parquet` frame (times are bar open times of the fills)."""
    import polars as pl

    if trades.shape[0] == 0:
        return pl.DataFrame(schema=trade_schema())
    ts = timestamps.cast(pl.Datetime("ms", "UTC"))
    entry_i = trades[:, kernel.T_ENTRY_I].astype(np.int64)
    exit_i = trades[:, kernel.T_EXIT_I].astype(np.int64)
    return pl.DataFrame(
        {
            "entry_time": ts.gather(entry_i),
            "exit_time": ts.gather(exit_i),
            "side": np.where(trades[:, kernel.T_SIDE] > 0, "long", "short"),
            "size": trades[:, kernel.T_SIZE],
            "entry_price": trades[:, kernel.T_ENTRY_PX],
            "exit_price": trades[:, kernel.T_EXIT_PX],
            "fees": trades[:, kernel.T_FEES],
            "funding": trades[:, kernel.T_FUNDING],
            "pnl": trades[:, kernel.T_PNL],
            "ret": trades[:, kernel.T_PNL] / trades[:, kernel.T_EQ0],
            "exit_reason": [_REASONS[int(r)] for r in trades[:, kernel.T_REASON]],
            "status": np.where(trades[:, kernel.T_REASON] == kernel.EXIT_OPEN, "open", "closed"),
        },
        schema=trade_schema(),
    )


def run_backtest(frame: pl.DataFrame, config: BacktestConfig) -> BacktestResult:
    """Backtest one symbol: `frame` has timestamp, OHLC(+funding_rate) and the signal columns."""
    import polars as pl

    out = run_arrays(to_arrays(frame, config.funding_hours), config)
    ts = frame["timestamp"].cast(pl.Datetime("ms", "UTC"))
    equity = pl.DataFrame({"timestamp": ts, "equity": out.equity, "position": out.position})
    return BacktestResult(equity=equity, trades=trades_frame(out.trades, ts), capital=config.capital)
