"""The watcher's rules on hand-built snapshot sequences: each alert is raised once, graded, and
cleared when the condition normalises; bad-quality data is alerted, never measured."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from apextrader.contracts import Bar, Liquidation, MarketAlert, MarketSnapshot, OrderBook
from apextrader.contracts.payloads import BookLevel, Exchange, Quality
from apextrader.contracts.spec import WatcherThresholds
from apextrader.watcher.engine import Watcher

T0 = datetime(2026, 1, 5, tzinfo=UTC)
SYM = "BTC/USDT:USDT"


def snap(
    i: int,
    close: float = 100.0,
    rng: float = 0.2,
    exchange: Exchange = "binance",
    quality: Quality = "ok",
    funding: float | None = None,
    liq: float = 0.0,
    depth: tuple[float, float] | None = None,
    backfill: bool = False,
    closed: bool = True,
) -> MarketSnapshot:
    t = T0 + timedelta(minutes=i)
    bar = Bar(open_time=t, open=close, high=close + rng, low=close - rng, close=close, volume=10.0)
    liqs = [Liquidation(side="sell", price=close, amount=liq / close, time=t)] if liq > 0 else []
    book = None
    if depth is not None:
        book = OrderBook(
            bids=[BookLevel(price=depth[0], amount=1.0)], asks=[BookLevel(price=depth[1], amount=1.0)]
        )
    return MarketSnapshot(
        exchange=exchange,
        symbol=SYM,
        timeframe="1m",
        bar=bar,
        quality=quality,
        funding_rate=funding,
        liquidations=liqs,
        depth=book,
        backfill=backfill,
        closed=closed,
    )


def now(i: int) -> datetime:
    return T0 + timedelta(minutes=i, seconds=1)


def kinds(alerts: list[MarketAlert]) -> list[tuple[str, str, bool]]:
    return [(a.kind, a.severity, a.active) for a in alerts]


def warm(w: Watcher, n: int = 100, seed: int = 1, **kw: object) -> int:
    r = random.Random(seed)
    for i in range(n):
        out = w.on_snapshot(
            snap(i, close=100 + r.uniform(-0.1, 0.1), rng=r.uniform(0.1, 0.3), liq=r.uniform(1_000, 3_000)),
            now(i),
        )
        assert out == [], out
    return n


def test_funding_extreme_raises_once_and_clears_with_hysteresis() -> None:
    w = Watcher(WatcherThresholds(funding_abs=0.001, spike_severity="reduce"))
    assert kinds(w.on_snapshot(snap(0, funding=0.0012), now(0))) == [("funding_extreme", "reduce", True)]
    assert w.on_snapshot(snap(1, funding=0.0015), now(1)) == []  # still active: no repeat
    assert w.on_snapshot(snap(2, funding=0.00095), now(2)) == []  # inside the hysteresis band
    assert kinds(w.on_snapshot(snap(3, funding=0.0002), now(3))) == [("funding_extreme", "reduce", False)]


def test_volatility_spike_and_clear() -> None:
    w = Watcher(WatcherThresholds(volatility_z=4.0, spike_severity="halt"))
    i = warm(w)
    out = w.on_snapshot(snap(i, close=103.0, rng=3.0), now(i))
    assert ("volatility_spike", "halt", True) in kinds(out)
    assert out[0].symbol == SYM and out[0].exchange == "binance" and out[0].value and out[0].value >= 4.0
    out = w.on_snapshot(snap(i + 1, close=103.0, rng=0.2), now(i + 1))
    assert ("volatility_spike", "halt", False) in kinds(out)


def test_liquidation_cascade_halts_when_both_scores_jump() -> None:
    w = Watcher(WatcherThresholds(liquidation_z=3.0, liquidation_window="5m"))
    i = warm(w)
    out = w.on_snapshot(snap(i, liq=200_000.0), now(i))
    assert ("liquidation_cascade", "halt", True) in kinds(out)
    cleared = []
    for j in range(1, 12):
        cleared += w.on_snapshot(snap(i + j, liq=2_000.0), now(i + j))
    # The bar's own z drops at once (halt re-graded to reduce while the window sum is still high),
    # then the short window rolls past the burst and the alert clears.
    assert kinds(cleared) == [
        ("liquidation_cascade", "reduce", True),
        ("liquidation_cascade", "reduce", False),
    ]


def test_repeated_liquidation_events_in_intrabar_snapshots_count_once() -> None:
    w = Watcher(WatcherThresholds())
    st_key = ("binance", SYM)
    for _ in range(5):  # the same event repeated by five intrabar snapshots
        w.on_snapshot(snap(0, liq=5_000.0, closed=False), now(0))
    w.on_snapshot(snap(0, liq=5_000.0, closed=True), now(0))
    assert list(w.instruments[st_key].liquidations.per_bar.values) == [5_000.0]


def test_stale_source_alerts_on_timer_and_clears_on_data() -> None:
    w = Watcher(WatcherThresholds(stale_after="15s"))
    w.on_snapshot(snap(0), T0)
    assert w.check_stale(T0 + timedelta(seconds=10)) == []
    out = w.check_stale(T0 + timedelta(seconds=16))
    assert (
        kinds(out) == [("stale_data", "halt", True)]
        and out[0].exchange == "binance"
        and out[0].symbol is None
    )
    assert w.check_stale(T0 + timedelta(seconds=20)) == []
    back = w.on_snapshot(snap(1), T0 + timedelta(seconds=21))
    assert kinds(back) == [("stale_data", "halt", False)]


def test_quality_flags_are_alerted_and_never_measured() -> None:
    w = Watcher(WatcherThresholds(volatility_z=4.0))
    i = warm(w)
    # A crossed snapshot with a wild price: alerted as crossed, not as a volatility spike.
    out = w.on_snapshot(snap(i, close=150.0, rng=20.0, quality="crossed"), now(i))
    assert kinds(out) == [("crossed_book", "halt", True)]
    assert len(w.instruments[("binance", SYM)].volatility.tr) == i - 1
    locked = w.on_snapshot(snap(i + 1, depth=(100.0, 100.0)), now(i + 1))
    assert locked == []  # still crossed (locked): no repeat
    ok = w.on_snapshot(snap(i + 2, depth=(99.9, 100.1)), now(i + 2))
    assert kinds(ok) == [("crossed_book", "halt", False)]
    stale = w.on_snapshot(snap(i + 3, quality="stale"), now(i + 3))
    gap = w.on_snapshot(snap(i + 4, quality="gap"), now(i + 4))
    assert kinds(stale) == [("stale_data", "halt", True)]
    assert kinds(gap) == [("stale_data", "halt", False), ("data_gap", "info", True)]


def test_exchange_divergence_names_the_outlier() -> None:
    w = Watcher(WatcherThresholds(divergence_bps=50))
    w.on_snapshot(snap(0, exchange="binance", depth=(99.99, 100.01)), now(0))
    w.on_snapshot(snap(0, exchange="bybit", depth=(100.01, 100.03)), now(0))
    out = w.on_snapshot(snap(0, exchange="okx", close=101.0, depth=(100.99, 101.01)), now(0))
    assert kinds(out) == [("exchange_divergence", "reduce", True)] and out[0].exchange == "okx"
    w.on_snapshot(snap(1, exchange="binance", depth=(99.99, 100.01)), now(1))
    w.on_snapshot(snap(1, exchange="bybit", depth=(100.01, 100.03)), now(1))
    back = w.on_snapshot(snap(1, exchange="okx", depth=(100.01, 100.03)), now(1))
    assert kinds(back) == [("exchange_divergence", "reduce", False)]


def test_backfill_warms_up_but_raises_nothing() -> None:
    w = Watcher(WatcherThresholds(volatility_z=4.0, funding_abs=0.001))
    for i in range(100):
        assert w.on_snapshot(snap(i, backfill=True, funding=0.01, rng=0.2 + (i % 3) * 0.05), now(i)) == []
    assert len(w.instruments[("binance", SYM)].volatility.tr) == 99
    out = w.on_snapshot(snap(100, close=105.0, rng=5.0), now(100))
    assert ("volatility_spike", "reduce", True) in kinds(out)


def test_divergence_compares_only_prices_of_the_same_bar() -> None:
    w = Watcher(WatcherThresholds(divergence_bps=50, stale_after="1h"))
    w.on_snapshot(snap(0, exchange="binance", depth=(99.99, 100.01)), now(0))
    w.on_snapshot(snap(0, exchange="bybit", depth=(100.01, 100.03)), now(0))
    # okx reports a later bar after the market moved 1 %: not a disagreement between exchanges.
    assert w.on_snapshot(snap(5, exchange="okx", close=101.0, depth=(100.99, 101.01)), now(0)) == []
