"""The `--signals` mode against vectorbt (equity, trades) and backtesting.py (trade list), 1e-6 relative."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

from apextrader.quant.backtest import BacktestConfig, run_backtest
from tests.quant.bars import random_bars, random_signals

vbt = pytest.importorskip("vectorbt")
backtesting = pytest.importorskip("backtesting")
from backtesting import Strategy  # noqa: E402
from backtesting.lib import FractionalBacktest  # noqa: E402

RTOL = 1e-6
CASES = [(0.0, 0.0, 1.0), (5.0, 2.0, 1.0), (10.0, 0.0, 0.5), (4.0, 7.0, 0.3)]


def _vectorbt(bars: pl.DataFrame, sig: pl.DataFrame, cfg: BacktestConfig) -> object:
    idx = pd.DatetimeIndex(bars["timestamp"].to_numpy())

    def shifted(name: str) -> pd.Series:
        return pd.Series(sig[name].to_numpy(), index=idx).shift(1, fill_value=False)

    return vbt.Portfolio.from_signals(
        close=pd.Series(bars["close"].to_numpy(), index=idx),
        entries=shifted("entry_long"),
        exits=shifted("exit_long"),
        short_entries=shifted("entry_short"),
        short_exits=shifted("exit_short"),
        price=pd.Series(bars["open"].to_numpy(), index=idx),
        open=pd.Series(bars["open"].to_numpy(), index=idx),
        high=pd.Series(bars["high"].to_numpy(), index=idx),
        low=pd.Series(bars["low"].to_numpy(), index=idx),
        fees=cfg.fees_bps / 1e4,
        slippage=cfg.slippage_bps / 1e4,
        size=cfg.size_pct,
        size_type="percent",
        init_cash=cfg.capital,
        upon_opposite_entry="close",
        freq="1min",
    )


@pytest.mark.parametrize(("fees", "slip", "pct"), CASES)
def test_equity_and_trades_equal_vectorbt(fees: float, slip: float, pct: float) -> None:
    bars = random_bars(3000, seed=int(fees * 10 + slip))
    sig = random_signals(3000, seed=int(pct * 10))
    cfg = BacktestConfig(fees_bps=fees, slippage_bps=slip, size_pct=pct, capital=10_000.0)
    ours = run_backtest(pl.concat([bars, sig], how="horizontal"), cfg)
    pf = _vectorbt(bars, sig, cfg)

    equity = ours.equity["equity"].to_numpy()
    theirs = pf.value().to_numpy()
    rel = np.max(np.abs(equity / theirs - 1.0))
    print(f"\nvectorbt fees={fees} slip={slip} pct={pct}: max rel equity diff {rel:.3e}")
    np.testing.assert_allclose(equity, theirs, rtol=RTOL)

    vt = pf.trades.records_readable  # an open position at the end is vectorbt's "Open" trade
    assert ours.trades.height == len(vt) > 20
    assert list(ours.trades["status"]) == [st.lower() for st in vt["Status"]]
    np.testing.assert_allclose(ours.trades["entry_price"].to_numpy(), vt["Avg Entry Price"], rtol=RTOL)
    np.testing.assert_allclose(ours.trades["exit_price"].to_numpy(), vt["Avg Exit Price"], rtol=RTOL)
    np.testing.assert_allclose(ours.trades["size"].to_numpy(), vt["Size"], rtol=RTOL)
    np.testing.assert_allclose(ours.trades["pnl"].to_numpy(), vt["PnL"], rtol=RTOL, atol=1e-9)
    assert list(ours.trades["side"]) == [d.lower() for d in vt["Direction"]]


def _backtesting_trades(bars: pl.DataFrame, sig: pl.DataFrame, cfg: BacktestConfig) -> pd.DataFrame:
    data = pd.DataFrame(
        {
            "Open": bars["open"].to_numpy(),
            "High": bars["high"].to_numpy(),
            "Low": bars["low"].to_numpy(),
            "Close": bars["close"].to_numpy(),
            "Volume": bars["volume"].to_numpy(),
        },
        index=pd.DatetimeIndex(bars["timestamp"].to_numpy()),
    )
    el, xl, es, xs = (sig[c].to_numpy() for c in ("entry_long", "exit_long", "entry_short", "exit_short"))
    pct = cfg.size_pct

    class Replay(Strategy):  # the engine's documented conflict rules, decided on bar t, filled at t+1 open
        def init(self) -> None:
            pass

        def next(self) -> None:
            i = len(self.data) - 1
            a, b, c, d = el[i], xl[i], es[i], xs[i]
            if a and b:
                a = b = False
            if c and d:
                c = d = False
            if a and c:
                a = c = False
            if (self.position.is_long and (b or c)) or (self.position.is_short and (d or a)):
                self.position.close()
            elif not self.position:
                if a:
                    self.buy(size=pct)
                elif c:
                    self.sell(size=pct)

    fee = cfg.fees_bps / 1e4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(
            data, Replay, cash=cfg.capital, commission=fee, fractional_unit=1e-9, finalize_trades=False
        )
        result = bt.run()
    return result["_trades"]


@pytest.mark.parametrize("fees", [0.0, 6.0])
def test_trade_list_equals_backtesting_py(fees: float) -> None:
    """backtesting.py applies its spread only at entry, so the comparison runs without slippage."""
    bars = random_bars(2000, seed=7)
    sig = random_signals(2000, seed=8)
    cfg = BacktestConfig(fees_bps=fees, slippage_bps=0.0, size_pct=0.5, capital=10_000.0)
    ours = run_backtest(pl.concat([bars, sig], how="horizontal"), cfg).trades
    ours = ours.filter(pl.col("status") == "closed")  # finalize_trades=False: closed trades only
    theirs = _backtesting_trades(bars, sig, cfg)
    assert ours.height == len(theirs) > 20
    ts = bars["timestamp"].to_numpy()
    assert np.array_equal(ours["entry_time"].to_numpy(), ts[theirs["EntryBar"].to_numpy()])
    assert np.array_equal(ours["exit_time"].to_numpy(), ts[theirs["ExitBar"].to_numpy()])
    np.testing.assert_allclose(ours["entry_price"].to_numpy(), theirs["EntryPrice"], rtol=RTOL)
    np.testing.assert_allclose(ours["exit_price"].to_numpy(), theirs["ExitPrice"], rtol=RTOL)
    np.testing.assert_allclose(np.abs(theirs["Size"]), ours["size"].to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(ours["pnl"].to_numpy(), theirs["PnL"], rtol=RTOL, atol=1e-6)
    size_rel = np.max(np.abs(np.abs(theirs["Size"].to_numpy()) / ours["size"].to_numpy() - 1))
    pnl_rel = np.max(np.abs(theirs["PnL"].to_numpy() / ours["pnl"].to_numpy() - 1))
    print(f"\nbacktesting.py fees={fees}: max rel size diff {size_rel:.3e}, pnl diff {pnl_rel:.3e}")


@pytest.mark.parametrize("side", ["long", "short"])
def test_open_position_at_the_end_equals_vectorbts_open_trade(side: str) -> None:
    """An entry with no exit: listed as `status: open` with vectorbt's exit price (the last close),
    fees (entry only) and PnL (unrealised); the stats count it apart; `close_at_end` closes it."""
    bars = random_bars(500, seed=11)
    sig = pl.DataFrame({f"entry_{side}": np.arange(500) == 100})
    cfg = BacktestConfig(fees_bps=5.0, slippage_bps=2.0, size_pct=1.0, capital=10_000.0)
    frame = pl.concat([bars, sig], how="horizontal")
    ours = run_backtest(frame, cfg)
    full = sig.with_columns(
        *(
            pl.lit(False).alias(c)
            for c in ("entry_long", "exit_long", "entry_short", "exit_short")
            if c not in sig.columns
        )
    )
    vt = _vectorbt(bars, full, cfg).trades.records_readable  # type: ignore[attr-defined]
    assert list(vt["Status"]) == ["Open"] and ours.trades["status"].to_list() == ["open"]
    row = ours.trades.row(0, named=True)
    assert row["exit_reason"] is None and row["exit_price"] == bars["close"][-1]
    for ours_col, theirs_col in (("entry_price", "Avg Entry Price"), ("exit_price", "Avg Exit Price"),
                                 ("size", "Size"), ("fees", "Entry Fees"), ("pnl", "PnL")):  # fmt: skip
        assert row[ours_col] == pytest.approx(float(vt[theirs_col].iloc[0]), rel=RTOL)
    assert float(vt["Exit Fees"].iloc[0]) == 0.0
    equity = ours.equity["equity"].to_numpy()
    assert equity[-1] - cfg.capital == pytest.approx(row["pnl"], rel=1e-9)  # equity carries it

    from apextrader.quant.backtest.runner import run_signals

    stats = run_signals(frame, cfg).stats
    assert (stats.trades, stats.open_trades, stats.expectancy) == (0, 1, None)
    assert stats.open_pnl == pytest.approx(row["pnl"])
    closed = run_backtest(frame, cfg.model_copy(update={"close_at_end": True})).trades
    assert closed["status"].to_list() == ["closed"] and closed["exit_reason"].to_list() == ["end"]
