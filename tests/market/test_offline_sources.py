"""The synthetic and replay sources: backfill then live, pacing, books, determinism."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest

from apextrader.contracts.payloads import MarketSnapshot
from apextrader.market.sources.base import MarketSource
from apextrader.market.sources.replay import ReplaySource
from apextrader.market.sources.synthetic import SyntheticSource
from apextrader.market.wire import WireSnapshot, as_model
from apextrader.quant.datafile import write_market_file
from apextrader.quant.market_data import InvalidMarketData
from apextrader.quant.synthetic import generate_long

EXCHANGES = ["binance", "okx"]
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]


LIVE_STARTED: list[float] = []


async def _collect(
    source: MarketSource, live_batches: int
) -> tuple[list[MarketSnapshot], list[MarketSnapshot]]:
    """Backfill and live snapshots, validated (the synthetic source publishes them unvalidated)."""
    await source.open()
    back = [as_model(s) async for batch in source.backfill() for s in batch]
    live: list[MarketSnapshot | WireSnapshot] = []
    n = 0
    LIVE_STARTED.append(time.monotonic())
    async for batch in source.live():
        live += batch
        n += 1
        if n >= live_batches:
            break
    await source.close()
    return back, [as_model(s) for s in live]


def _synthetic(**kw: object) -> SyntheticSource:
    args: dict[str, object] = {"exchanges": EXCHANGES, "symbols": SYMBOLS, "seed": 3, "backfill_bars": 250}
    return SyntheticSource(**{**args, **kw})  # type: ignore[arg-type]


async def test_synthetic_backfill_then_accelerated_live() -> None:
    source = _synthetic(hz=20.0, speed=600.0)  # 30 market seconds per tick
    back, live = await _collect(source, 8)
    elapsed = time.monotonic() - LIVE_STARTED[-1]
    assert len(back) == 250 * 4 and all(s.backfill and s.closed for s in back)
    per_series = [s for s in back if s.exchange == "okx" and s.symbol == "ETH/USDT:USDT"]
    times = [s.bar.open_time for s in per_series]
    assert times == sorted(times) and len(set(times)) == 250
    closed = [s for s in live if s.closed]
    forming = [s for s in live if not s.closed]
    assert len(closed) == 4 * 4 and forming  # 8 ticks x 30 s = 4 bars, forming bars in between
    assert not any(s.backfill for s in live)
    assert 0.3 < elapsed < 5.0  # 8 ticks at 20 Hz: paced (7 sleeps of 50 ms), not free-running
    for s in live:
        assert s.depth is not None and not s.depth.crossed and s.quality == "ok"
        assert s.bar.buy_volume is not None and s.funding_rate is not None
    first_live = min(s.bar.open_time for s in closed)
    assert first_live > max(times)  # live continues where the backfill ended


async def test_forming_bar_converges_to_the_closed_bar() -> None:
    _, live = await _collect(_synthetic(hz=50.0, speed=60.0 * 50 / 8), 16)  # 1/8 bar per tick
    key = ("binance", "BTC/USDT:USDT")
    series = [s for s in live if (s.exchange, s.symbol) == key]
    closed = next(s for s in series if s.closed)
    forming = [s for s in series if not s.closed and s.bar.open_time == closed.bar.open_time]
    assert forming, "forming snapshots precede the close"
    assert all(f.bar.volume < closed.bar.volume for f in forming)
    assert all(f.bar.high <= closed.bar.high and f.bar.low >= closed.bar.low for f in forming)
    seqs = [s.seq for s in series]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_synthetic_is_deterministic_and_exchanges_differ_by_a_small_basis() -> None:
    a, _ = await _collect(_synthetic(), 0 + 1)
    b, _ = await _collect(_synthetic(), 1)
    assert [s.bar for s in a] == [s.bar for s in b]
    by = {(s.exchange, s.symbol, s.bar.open_time): s.bar.close for s in a}
    diffs = [abs(by[("binance", sym, t)] / by[("okx", sym, t)] - 1) for (ex, sym, t) in by if ex == "binance"]
    assert 0 < max(diffs) < 10e-4  # a few bps, never identical, never far apart


async def test_unpaced_synthetic_is_fast() -> None:
    source = _synthetic(speed=None, backfill_bars=0)
    started = time.monotonic()
    _, live = await _collect(source, 500)
    assert len(live) == 500 * 4 and all(s.closed for s in live)
    assert time.monotonic() - started < 5


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    frame = generate_long(SYMBOLS, 300, seed=9).with_columns(exchange=pl.lit("okx"))
    path = tmp_path / "bars.csv"
    write_market_file(frame, path)
    return path


async def test_replay_backfills_the_head_and_replays_the_rest(recorded: Path) -> None:
    source = ReplaySource(recorded, exchanges=["okx"], symbols=SYMBOLS, backfill_bars=200, speed=None, hz=2.0)
    back, live = await _collect(source, 10**6)
    assert len(back) == 400 and len(live) == 200 and source.finished
    assert all(s.backfill for s in back) and not any(s.backfill for s in live)
    eth = [s for s in back + live if s.symbol == "ETH/USDT:USDT"]
    assert [s.seq for s in eth] == list(range(1, 301))
    assert all(isinstance(s, MarketSnapshot) and s.depth is not None for s in eth)
    assert any(s.liquidations for s in eth)


async def test_replay_paces_by_recorded_time(recorded: Path) -> None:
    # 1 bar = 60 s; speed 1200 -> 20 bars a second, 4 Hz ticks -> 5 bars per tick and symbol
    source = ReplaySource(recorded, exchanges=["okx"], symbols=SYMBOLS, backfill_bars=0, speed=1200.0, hz=4.0)
    await source.open()
    sizes = []
    async for batch in source.live():
        sizes.append(len(batch))
        if len(sizes) == 4:
            break
    assert sizes[1:] == [10, 10, 10]


async def test_replay_rejects_a_bad_file_naming_the_problem(tmp_path: Path) -> None:
    frame = generate_long(SYMBOLS[:1], 20, seed=1).drop("volume")
    path = tmp_path / "bad.parquet"
    write_market_file(frame, path)
    with pytest.raises(InvalidMarketData, match=r"missing column.*volume"):
        await ReplaySource(path, exchanges=["binance"], symbols=SYMBOLS).open()


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("depth", -1.0, r"column 'depth' is -1.0 at row 7 .*must be > 0"),
        ("spread_bps", float("nan"), r"column 'spread_bps' is nan at row 7"),
        ("funding_rate", float("inf"), r"column 'funding_rate' is inf at row 7"),
        ("liq_long", -5.0, r"column 'liq_long' is -5.0 at row 7"),
    ],
)
async def test_replay_names_the_bad_optional_value_before_publishing_anything(
    tmp_path: Path, column: str, value: float, message: str
) -> None:
    frame = generate_long(SYMBOLS[:1], 20, seed=1)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
        if column in frame.columns
        else pl.when(pl.int_range(pl.len()) == 7).then(pl.lit(value)).otherwise(None).alias(column)
    )
    path = tmp_path / "bad.parquet"
    write_market_file(frame, path)
    source = ReplaySource(path, exchanges=["binance"], symbols=SYMBOLS, backfill_bars=5)
    with pytest.raises(InvalidMarketData, match=message):
        await source.open()
