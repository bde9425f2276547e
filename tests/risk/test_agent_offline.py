"""RiskManagerAgent handlers without the bus: observed margin violations are counted once per breach
(never produced by the gate itself), marks come from snapshots, and fills are applied once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from apextrader.bus import metrics
from apextrader.contracts import (
    Bar,
    MarketSnapshot,
    MarketSnapshotEvent,
    OrderApprovedEvent,
    OrderFilled,
    OrderFilledEvent,
    SignalRejectedEvent,
    SignalValidated,
    SignalValidatedEvent,
)
from apextrader.risk.agent import RiskManagerAgent
from tests.fixtures.agents import offline_context, write_pipeline

from .helpers import signal

ETH = ("binance", "ETH/USDT:USDT")


def snap(price: float, minute: int) -> MarketSnapshotEvent:
    t = datetime(2026, 1, 5, 0, minute, tzinfo=UTC)
    bar = Bar(open_time=t, open=price, high=price, low=price, close=price, volume=1.0)
    data = MarketSnapshot(exchange="binance", symbol="ETH/USDT:USDT", timeframe="1m", bar=bar)
    return MarketSnapshotEvent.new(data, pipeline="btc-perp", source_agent="market-scanner")


async def test_observed_violations_counted_once_per_breach(tmp_path: Path) -> None:
    pfile = write_pipeline(tmp_path, risk={"maxLeverage": 1, "maxPositionPct": 1.0, "marginHeadroom": 0.2})
    risk = RiskManagerAgent(offline_context("risk-manager", pfile))
    counter = metrics.MARGIN_VIOLATIONS.labels(track="stable")
    before = counter._value.get()
    sig = SignalValidatedEvent.new(
        SignalValidated(
            signal=signal(side="short", price=100.0, stop=100.01),
            expectancy=0.1,
            expectancy_se=0.01,
            trades=10,
            confidence=0.9,
        ),
        pipeline="btc-perp",
        source_agent="backtester",
        track="stable",
    )
    (approved,) = await risk.on_signal(sig)
    assert isinstance(approved, OrderApprovedEvent)
    assert await risk.on_signal(sig) == [approved]  # redelivered: same decision, no second reservation
    o = approved.data
    fill = approved.derive(
        OrderFilledEvent,
        OrderFilled(
            client_order_id=o.client_order_id,
            exchange=o.exchange,
            symbol=o.symbol,
            side=o.side,
            requested=o.amount,
            filled=o.amount,
            avg_price=100.0,
            fee=0.0,
            mid_at_decision=100.0,
            slippage_bps=0.0,
            status="filled",
        ),
        source_agent="execution",
    )
    await risk.on_fill(fill)
    await risk.on_fill(fill)  # redelivered fill: applied once
    assert risk.book.position_qty(ETH) == -o.amount and not risk.book.pending
    assert counter._value.get() == before  # the gate's own order breaches nothing
    # The short loses 20 %: initial margin (notional x 1.2) outgrows 80 % of the shrunken equity.
    await risk.on_snapshot(snap(120.0, 1))
    await risk.on_snapshot(snap(121.0, 2))
    assert counter._value.get() == before + 1
    await risk.on_snapshot(snap(100.0, 3))  # back within limits
    await risk.on_snapshot(snap(125.0, 4))  # a second breach
    assert counter._value.get() == before + 2
    assert risk.book.mark_of(ETH) == 125.0
    gauge = metrics.POSITION_NOTIONAL.labels(track="stable", symbol="ETH/USDT:USDT")
    assert gauge._value.get() == -o.amount * 125.0


def validated(price: float, minute: int) -> SignalValidatedEvent:
    data = SignalValidated(
        signal=signal(side="long", price=price, stop=price * 0.98, minute=minute),
        expectancy=0.1, expectancy_se=0.01, trades=10, confidence=0.9,
    )  # fmt: skip
    return SignalValidatedEvent.new(data, pipeline="btc-perp", source_agent="backtester", track="stable")


async def test_decision_mid_is_the_freshest_price_in_market_time(tmp_path: Path) -> None:
    """When the snapshot consumer trails the signals (a backlog), the mark it holds is older than the
    signal's bar: the decision's mid is the signal's close, and a late snapshot of an earlier bar does
    not move the mark back."""
    risk = RiskManagerAgent(offline_context("risk-manager", write_pipeline(tmp_path)))
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    minute = int((signal().bar_time - t0).total_seconds() // 60)
    await risk.on_snapshot(snap(90.0, minute + 1))  # an old mark: two bars before the signal's
    (approved,) = await risk.on_signal(validated(100.0, minute + 3))
    assert isinstance(approved, OrderApprovedEvent)
    assert approved.data.mid_at_decision == 100.0  # not the stale 90
    await risk.on_snapshot(snap(95.0, minute + 2))  # the trailing snapshot of an earlier bar
    assert risk.book.mark_of(ETH) == 100.0
    await risk.on_snapshot(snap(101.0, minute + 4))  # a later bar moves it on
    assert risk.book.mark_of(ETH) == 101.0
    await risk.on_signal(validated(99.0, minute + 3))  # a signal of an older bar than the mark
    assert risk.book.mark_of(ETH) == 101.0


async def test_bars_behind_counts_whole_bars_since_the_signals_bar_closed(tmp_path: Path) -> None:
    risk = RiskManagerAgent(offline_context("risk-manager", write_pipeline(tmp_path)))
    per_bar = int(risk.bar_seconds // 60)  # minutes
    bar = signal().bar_time
    inst = ETH
    assert risk._bars_behind(inst, bar) is None
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    minute = int((bar - t0).total_seconds() // 60)
    await risk.on_snapshot(snap(100.0, minute))  # the signal's own bar, closed (snap() bars are closed)
    assert risk._bars_behind(inst, bar) == 0
    await risk.on_snapshot(snap(100.0, minute + 3 * per_bar))  # three bars later, closed
    assert risk._bars_behind(inst, bar) == 3
    (refused,) = await risk.on_signal(validated(100.0, minute))
    assert isinstance(refused, SignalRejectedEvent) and refused.data.rule == "stale_signal"
