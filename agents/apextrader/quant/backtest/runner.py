"""Whole runs as `apex backtest` does them: a spec's strategies over per-symbol bars (one pass, or
walk-forward with out-of-sample results only), or externally supplied signals.

Capital is split evenly over the (symbol, strategy) legs; the run's equity is the sum of the legs'
equity (each carried flat before its first and after its last bar). In a walk-forward run a leg's
equity is its out-of-sample windows chained: each fold starts from where the previous one ended.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from apextrader.contracts.payloads import StrategyName
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.quant.backtest.engine import BacktestConfig, run_arrays, run_backtest, to_arrays, trades_frame
from apextrader.quant.indicators import WARMUP_BARS, compute_features
from apextrader.quant.market_data import InvalidMarketData
from apextrader.quant.stats import Stats, compute_stats
from apextrader.quant.strategies import STRATEGIES, FeatureArrays, params_for
from apextrader.quant.strategies.base import REQUIRED_FEATURES
from apextrader.quant.walkforward import (
    FoldResult,
    Verdict,
    WalkForwardResult,
    auto_plan,
    expand_grid,
    walk_forward,
    with_signals,
)

Progress = Callable[[int], None]
#: Fewest bars a strategy backtest accepts: the features' warm-up plus room to trade.
MIN_BARS = WARMUP_BARS + 50


@dataclass(frozen=True)
class Leg:
    symbol: str
    strategy: str
    equity: pl.DataFrame  # timestamp, equity, position
    trades: pl.DataFrame
    folds: list[dict[str, Any]] = field(default_factory=list)
    verdict: Verdict | None = None


@dataclass(frozen=True)
class RunOutput:
    stats: Stats
    equity: pl.DataFrame  # timestamp, equity
    trades: pl.DataFrame
    prices: dict[str, pl.DataFrame]  # symbol -> timestamp, close
    legs: list[Leg]

    def write(self, out_dir: Path) -> list[Path]:
        """`stats.json`, `trades.parquet`, `equity.parquet` (docs/backtest.md lists their columns)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / "stats.json", out_dir / "trades.parquet", out_dir / "equity.parquet"]
        paths[0].write_text(json.dumps(self.stats.model_dump(), indent=2, default=str) + "\n")
        self.trades.write_parquet(paths[1])
        self.equity.select("timestamp", "equity").write_parquet(paths[2])
        return paths


def features_for(symbol: str, bars: pl.DataFrame, min_bars: int = MIN_BARS) -> pl.DataFrame:
    """Features of one symbol's bars, refusing data too short to trade or NaN after warm-up."""
    if bars.height < min_bars:
        raise InvalidMarketData("too_short", f"{symbol}: {bars.height} bars, need at least {min_bars}")
    feats = compute_features(bars)
    for name in REQUIRED_FEATURES:
        bad = feats[name].slice(WARMUP_BARS).is_null() | feats[name].slice(WARMUP_BARS).is_nan()
        if bad.any():
            row = WARMUP_BARS + int(bad.arg_max() or 0)
            raise InvalidMarketData("nan", f"{symbol}: feature {name} is NaN at row {row} after warm-up")
    return feats


def _legs_equity(legs: list[Leg], capital_each: float) -> pl.DataFrame:
    times = pl.concat([leg.equity.select("timestamp") for leg in legs]).unique().sort("timestamp")
    total = np.zeros(times.height)
    busy = np.zeros(times.height, dtype=bool)
    for leg in legs:
        joined = times.join(leg.equity, on="timestamp", how="left")
        eq = joined["equity"].fill_null(strategy="forward").fill_null(capital_each).to_numpy()
        total += eq
        busy |= joined["position"].fill_null(0.0).to_numpy() != 0
    return times.with_columns(equity=pl.Series(total), position=pl.Series(busy.astype(np.float64)))


def combine(legs: list[Leg], capital: float, prices: dict[str, pl.DataFrame]) -> RunOutput:
    equity = _legs_equity(legs, capital / len(legs))
    trades = pl.concat([leg.trades for leg in legs], how="diagonal_relaxed").sort("entry_time")
    stats = compute_stats(
        equity["equity"].to_numpy(), equity["timestamp"], trades, equity["position"].to_numpy(), capital
    )
    folds = [f for leg in legs for f in leg.folds]
    verdicts = [
        {"symbol": leg.symbol, "strategy": leg.strategy, "accepted": leg.verdict.accepted,
         "reason": leg.verdict.reason, "expectancy": leg.verdict.expectancy,
         "expectancy_se": leg.verdict.expectancy_se, "trades": leg.verdict.trades,
         "confidence": leg.verdict.confidence, "statistic": leg.verdict.statistic,
         "threshold": leg.verdict.threshold, "trials": leg.verdict.trials, "method": leg.verdict.method}
        for leg in legs if leg.verdict is not None
    ]  # fmt: skip
    stats = stats.model_copy(update={"folds": folds, "verdicts": verdicts})
    return RunOutput(stats, equity.select("timestamp", "equity"), trades, prices, legs)


def _tag(trades: pl.DataFrame, symbol: str, strategy: str) -> pl.DataFrame:
    return trades.with_columns(symbol=pl.lit(symbol), strategy=pl.lit(strategy))


def _enabled(spec: TradingPipelineSpec) -> list[StrategyName]:
    names: list[StrategyName] = [n for n in STRATEGIES if params_for(spec, n).enabled]
    if not names:
        raise InvalidMarketData("invalid", "spec.strategies: every strategy is disabled")
    return names


def run_plain(
    frames: dict[str, pl.DataFrame],
    spec: TradingPipelineSpec,
    progress: Progress | None = None,
    close_at_end: bool = False,
) -> RunOutput:
    """Each enabled strategy with the spec's parameters over each symbol's bars."""
    names = _enabled(spec)
    cfg = BacktestConfig.from_spec(spec, close_at_end=close_at_end).model_copy(
        update={"capital": spec.capital.amount / (len(names) * len(frames))}
    )
    legs, prices = [], {}
    for symbol, bars in frames.items():
        feats = features_for(symbol, bars)
        prices[symbol] = feats.select("timestamp", "close")
        arrays, farrays = to_arrays(feats, cfg.funding_hours), FeatureArrays.from_frame(feats)
        for name in names:
            out = run_arrays(with_signals(arrays, STRATEGIES[name], farrays, params_for(spec, name)), cfg)
            equity = pl.DataFrame(
                {"timestamp": feats["timestamp"], "equity": out.equity, "position": out.position}
            )
            legs.append(
                Leg(symbol, name, equity, _tag(trades_frame(out.trades, feats["timestamp"]), symbol, name))
            )
            if progress:
                progress(1)
    return combine(legs, spec.capital.amount, prices)


def _iso(ts: pl.Series, i: int) -> str:
    return str(ts[min(i, ts.len() - 1)].isoformat())


def run_walk_forward(
    frames: dict[str, pl.DataFrame], spec: TradingPipelineSpec, folds: int, progress: Progress | None = None
) -> RunOutput:
    """Walk-forward per symbol and strategy over the spec's grid; out-of-sample results only."""
    names = _enabled(spec)
    bt = spec.backtest
    capital_each = spec.capital.amount / (len(names) * len(frames))
    cfg = BacktestConfig.from_spec(spec, close_at_end=True).model_copy(update={"capital": capital_each})
    legs, prices = [], {}
    for symbol, bars in frames.items():
        feats = features_for(symbol, bars)
        prices[symbol] = feats.select("timestamp", "close")
        ts = feats["timestamp"]
        plan = auto_plan(feats.height, folds, bt.in_sample_bars / bt.out_of_sample_bars, bt.anchored)
        arrays, farrays = to_arrays(feats, cfg.funding_hours), FeatureArrays.from_frame(feats)
        for name in names:
            strategy = STRATEGIES[name]
            grid = expand_grid(strategy, params_for(spec, name), bt.grid.get(_grid_key(name), {}))
            result = walk_forward(
                arrays, farrays, strategy, grid, plan, cfg, bt.min_trades, bt.min_expectancy, progress,
                significance=bt.significance,
            )  # fmt: skip
            legs.append(_walk_forward_leg(symbol, name, ts, result, capital_each))
    return combine(legs, spec.capital.amount, prices)


def _fold_row(symbol: str, name: str, ts: pl.Series, fr: FoldResult, total_return: float) -> dict[str, Any]:
    f, oos = fr.fold, fr.oos
    return {
        "symbol": symbol,
        "strategy": name,
        "fold": f.index,
        "in_sample_start": _iso(ts, f.is_start),
        "in_sample_end": _iso(ts, f.is_end - 1),
        "out_of_sample_start": _iso(ts, f.oos_start),
        "out_of_sample_end": _iso(ts, f.oos_end - 1),
        "params": fr.params.model_dump(by_alias=True) if fr.params is not None else None,  # type: ignore[attr-defined]
        "in_sample_expectancy": fr.in_sample_expectancy,
        "in_sample_trades": fr.in_sample_trades,
        "trades": int(oos.trades.shape[0]) if oos is not None else 0,
        "expectancy": float(oos.returns.mean()) if oos is not None and oos.returns.size else None,
        "total_return": total_return,
    }


def _walk_forward_leg(
    symbol: str, name: str, ts: pl.Series, result: WalkForwardResult, capital_each: float
) -> Leg:
    """Chain the folds' out-of-sample windows into one equity curve and trade list."""
    level = capital_each
    parts, trade_parts, rows = [], [trades_frame(np.empty((0, 11)), ts)], []
    for fr in result.folds:
        f = fr.fold
        window_ts = ts.slice(f.oos_start, f.oos_end - f.oos_start)
        if fr.oos is None:
            growth, pos = np.ones(window_ts.len()), np.zeros(window_ts.len())
        else:
            growth, pos = fr.oos.equity / capital_each, fr.oos.position
            scale = level / capital_each  # money amounts in the leg's chained units
            trade_parts.append(
                trades_frame(fr.oos.trades, window_ts).with_columns(
                    [pl.col(c) * scale for c in ("size", "fees", "funding", "pnl")]
                )
            )
        parts.append(pl.DataFrame({"timestamp": window_ts, "equity": level * growth, "position": pos}))
        rows.append(_fold_row(symbol, name, ts, fr, float(growth[-1] - 1.0)))
        level *= float(growth[-1])
    trades = _tag(pl.concat(trade_parts), symbol, name)
    return Leg(symbol, name, pl.concat(parts), trades, rows, result.verdict)


def _grid_key(name: StrategyName) -> str:
    return "meanReversion" if name == "mean_reversion" else name


def run_signals(bars: pl.DataFrame, config: BacktestConfig, symbol: str = "signals") -> RunOutput:
    """External signals (already joined onto `bars`) through the engine, percent sizing."""
    if bars.height < 2:
        raise InvalidMarketData("too_short", f"{symbol}: {bars.height} bar(s), need at least 2")
    result = run_backtest(bars, config)
    leg = Leg(symbol, "signals", result.equity, _tag(result.trades, symbol, "signals"))
    return combine([leg], config.capital, {symbol: bars.select("timestamp", "close")})
