"""Engine conventions on hand-made bars: next-open fills, stops/targets worst case, funding, sizing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from apextrader.quant.backtest import BacktestConfig, run_backtest
from apextrader.quant.stats import compute_stats


def frame(
    rows: list[tuple[float, float, float, float]], start: datetime | None = None, **cols: list
) -> pl.DataFrame:
    start = start or datetime(2024, 1, 1, 1, tzinfo=UTC)
    ts = [start + timedelta(minutes=i) for i in range(len(rows))]
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    base = pl.DataFrame({"timestamp": ts, "open": o, "high": h, "low": lo, "close": c})
    return base.with_columns(
        pl.col("timestamp").dt.cast_time_unit("ms"), **{k: pl.Series(v) for k, v in cols.items()}
    )


FLAT = (100.0, 101.0, 99.0, 100.0)
NO_COST = BacktestConfig(fees_bps=0, slippage_bps=0, capital=1000.0)


def test_signal_fills_at_next_open_not_this_close() -> None:
    rows = [FLAT, (110.0, 111.0, 109.0, 110.0), (120.0, 121.0, 119.0, 120.0), FLAT]
    f = frame(rows, entry_long=[True, False, False, False], exit_long=[False, True, False, False])
    r = run_backtest(f, NO_COST)
    t = r.trades.row(0, named=True)
    assert (t["entry_price"], t["exit_price"]) == (110.0, 120.0)
    assert t["entry_time"] == f["timestamp"][1] and t["exit_time"] == f["timestamp"][2]
    assert r.equity["equity"][0] == 1000.0  # nothing filled on the signal bar
    assert r.equity["equity"][-1] == pytest.approx(1000.0 * 120 / 110)


def test_fees_and_slippage_against_the_trader() -> None:
    rows = [FLAT, FLAT, FLAT, FLAT]
    f = frame(rows, entry_short=[True, False, False, False], exit_short=[False, True, False, False])
    r = run_backtest(f, BacktestConfig(fees_bps=10, slippage_bps=20, capital=1000.0))
    t = r.trades.row(0, named=True)
    assert t["side"] == "short"
    assert t["entry_price"] == pytest.approx(100 * (1 - 0.002))  # sells lower
    assert t["exit_price"] == pytest.approx(100 * (1 + 0.002))  # buys back higher
    size = 1000.0 / (t["entry_price"] * 1.001)
    assert t["size"] == pytest.approx(size)
    fees = size * (t["entry_price"] + t["exit_price"]) * 0.001
    assert t["fees"] == pytest.approx(fees)
    assert t["pnl"] == pytest.approx(-size * (t["exit_price"] - t["entry_price"]) - fees)
    assert r.equity["equity"][-1] == pytest.approx(1000.0 + t["pnl"])


@pytest.mark.parametrize(
    ("bar", "exit_price", "reason"),
    [
        ((100.0, 106.0, 94.0, 100.0), 95.0, "stop"),  # both levels in range: stop first (worst case)
        ((100.0, 106.0, 99.0, 100.0), 105.0, "target"),
        ((93.0, 94.0, 90.0, 92.0), 93.0, "stop"),  # gap below the stop: fills at the open
        ((108.0, 109.0, 107.0, 108.0), 108.0, "target"),  # gap above the target: fills at the open
    ],
)
def test_stop_target_intrabar(bar: tuple[float, float, float, float], exit_price: float, reason: str) -> None:
    rows = [FLAT, FLAT, bar, FLAT]
    f = frame(
        rows,
        entry_long=[True, False, False, False],
        stop_distance=[5.0, None, None, None],
        target_distance=[5.0, None, None, None],
    )
    r = run_backtest(f, NO_COST)
    t = r.trades.row(0, named=True)
    assert (t["exit_price"], t["exit_reason"], t["exit_time"]) == (exit_price, reason, f["timestamp"][2])


def test_short_stop_checked_on_the_entry_bar() -> None:
    rows = [FLAT, (100.0, 104.0, 99.5, 103.0), FLAT]
    f = frame(rows, entry_short=[True, False, False], stop_distance=[3.0, None, None])
    t = run_backtest(f, NO_COST).trades.row(0, named=True)
    assert (t["exit_price"], t["exit_reason"], t["exit_time"]) == (103.0, "stop", f["timestamp"][1])


def test_risk_sizing_and_notional_cap() -> None:
    rows = [FLAT, FLAT, (100.0, 100.0, 90.0, 95.0)]
    f = frame(rows, entry_long=[True, False, False], stop_distance=[2.0, None, None])
    cfg = BacktestConfig(
        fees_bps=0, slippage_bps=0, capital=1000.0, sizing="risk", risk_per_trade=0.01, max_notional=10.0
    )
    t = run_backtest(f, cfg).trades.row(0, named=True)
    assert t["size"] == pytest.approx(0.01 * 1000 / 2.0)  # loses exactly 1% at the stop
    assert t["pnl"] == pytest.approx(-10.0)
    assert t["ret"] == pytest.approx(-0.01)
    capped = run_backtest(f, cfg.model_copy(update={"max_notional": 0.2})).trades.row(0, named=True)
    assert capped["size"] == pytest.approx(0.2 * 1000 / 100)


def test_funding_settles_at_funding_times_on_the_carried_position() -> None:
    start = datetime(2024, 1, 1, 7, 58, tzinfo=UTC)  # bar 2 opens at 08:00
    rows = [FLAT] * 5
    rate = [0.01] * 5  # reported on every bar, paid only at 08:00
    long_ = frame(rows, start, entry_long=[True, False, False, False, False], funding_rate=rate)
    r = run_backtest(long_, NO_COST)
    assert r.equity["equity"][-1] == pytest.approx(1000.0 - 10.0 * 100.0 * 0.01)  # 10 units pay 1%
    short = frame(rows, start, entry_short=[True, False, False, False, False], funding_rate=rate)
    assert run_backtest(short, NO_COST).equity["equity"][-1] == pytest.approx(1010.0)  # shorts receive


def test_close_at_end_closes_the_open_position() -> None:
    f = frame([FLAT, FLAT, (100.0, 101.0, 99.0, 101.0)], entry_long=[True, False, False])
    left = run_backtest(f, NO_COST).trades.row(0, named=True)  # listed, open, marked at the close
    assert (left["status"], left["exit_price"], left["exit_reason"], left["pnl"]) == (
        "open",
        101.0,
        None,
        10.0,
    )
    t = run_backtest(f, NO_COST.model_copy(update={"close_at_end": True})).trades.row(0, named=True)
    assert (t["exit_price"], t["exit_reason"], t["status"]) == (101.0, "end", "closed")


def test_stats_on_known_equity() -> None:
    f = frame(
        [FLAT, (100.0, 101, 99, 110), (110.0, 111, 99, 99), (99.0, 100, 98, 99)],
        entry_long=[True, False, False, False],
        exit_long=[False, True, False, False],
    )
    r = run_backtest(f, NO_COST)
    eq = r.equity["equity"].to_numpy()
    s = compute_stats(eq, r.equity["timestamp"], r.trades, r.equity["position"].to_numpy(), 1000.0)
    assert s.total_return == pytest.approx(0.1)
    assert s.max_drawdown == pytest.approx(0.0)
    assert s.trades == 1 and s.win_rate == 1.0 and s.profit_factor is None
    assert s.expectancy == pytest.approx(0.1) and s.expectancy_se is None
    assert s.exposure == pytest.approx(0.25)
    rets = np.diff(eq, prepend=1000.0) / np.concatenate(([1000.0], eq[:-1]))
    assert s.sharpe == pytest.approx(rets.mean() / rets.std(ddof=1) * np.sqrt(365 * 24 * 60))
