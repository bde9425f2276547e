"""Seeded OHLCV test data (a geometric random walk; never tuned to make a strategy win)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl


def random_bars(
    n: int, seed: int = 0, vol: float = 0.01, ar: float = 0.0, start_price: float = 100.0
) -> pl.DataFrame:
    """1-minute bars; `ar` > 0 adds AR(1) autocorrelation of returns (a momentum edge exists)."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, vol, n)
    rets = shocks.copy()
    if ar:
        prev = 0.0
        for i in range(n):
            prev = ar * prev + shocks[i]
            rets[i] = prev
    close = start_price * np.exp(np.cumsum(rets))
    open_ = np.concatenate(([start_price], close[:-1])) * np.exp(rng.normal(0.0, vol / 10, n))
    wick = np.abs(rng.normal(0.0, vol / 2, (2, n)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    volume = rng.lognormal(3.0, 0.5, n)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ts = pl.datetime_range(start, start + timedelta(minutes=n - 1), "1m", eager=True, time_zone="UTC")
    return pl.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    ).with_columns(pl.col("timestamp").dt.cast_time_unit("ms"))


def random_signals(n: int, seed: int = 1, p: float = 0.03) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {name: rng.random(n) < p for name in ("entry_long", "exit_long", "entry_short", "exit_short")}
    for v in cols.values():
        v[0] = False  # backtesting.py calls next() from the second bar on
    return pl.DataFrame(cols)
