"""Paper fills walk the depth: partial fills, fees by tier, signed slippage, latency, state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apextrader.contracts import OrderApproved, OrderBook
from apextrader.contracts.payloads import BookLevel
from apextrader.contracts.spec import ExecutionSpec
from apextrader.venues.orders import IllegalTransition, OrderState, OrderTracker
from apextrader.venues.paper import (
    BookHistory,
    LatencyModel,
    PaperEngine,
    adverse_bps,
    slippage_bps,
    walk_book,
)


def book(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> OrderBook:
    return OrderBook(
        bids=[BookLevel(price=p, amount=a) for p, a in bids],
        asks=[BookLevel(price=p, amount=a) for p, a in asks],
    )


BOOK = book([(99.9, 1.0), (99.8, 2.0), (99.5, 5.0)], [(100.1, 1.0), (100.2, 2.0), (100.5, 5.0)])


def approved(side: str = "buy", amount: float = 2.0, **kw: object) -> OrderApproved:
    return OrderApproved.model_validate(
        {
            "client_order_id": "c" * 32,
            "exchange": "bybit",
            "symbol": "ETH/USDT:USDT",
            "side": side,
            "amount": amount,
            "mid_at_decision": 100.0,
            "notional": amount * 100.0,
            "leverage": 1.0,
            "weight_applied": 100,
            **kw,
        }
    )


def test_walk_takes_levels_best_first() -> None:
    w = walk_book(BOOK, "buy", 2.5)
    assert w.filled == pytest.approx(2.5)
    assert w.avg_price == pytest.approx((1.0 * 100.1 + 1.5 * 100.2) / 2.5)
    assert w.levels == 2
    s = walk_book(BOOK, "sell", 4.0)
    assert s.avg_price == pytest.approx((99.9 + 2 * 99.8 + 99.5) / 4)


def test_depth_runs_out_partial_fill_and_limit_stops_early() -> None:
    w = walk_book(BOOK, "buy", 10.0)
    assert w.filled == pytest.approx(8.0) and w.levels == 3
    lim = walk_book(BOOK, "buy", 10.0, limit=100.2)
    assert lim.filled == pytest.approx(3.0)


def test_engine_fees_by_exchange_tier_and_signed_slippage() -> None:
    eng = PaperEngine(ExecutionSpec(taker_fee_bps={"binance": 4.0, "bybit": 5.5, "okx": 5.0}))
    f = eng.fill(approved("buy", 2.0), BOOK)
    assert f is not None and f.complete
    avg = (100.1 + 100.2) / 2
    assert f.avg_price == pytest.approx(avg)
    assert f.fee == pytest.approx(2.0 * avg * 5.5e-4)
    assert f.slippage_bps == pytest.approx((avg - 100.0) / 100.0 * 1e4)
    part = eng.fill(approved("sell", 20.0), BOOK)
    assert part is not None and part.remaining == pytest.approx(12.0) and not part.complete
    # Sell below mid is adverse (positive); improvement is negative and records as 0.
    assert part.slippage_bps > 0
    assert slippage_bps("sell", 100.5, 100.0) == pytest.approx(-50.0)
    assert adverse_bps(-50.0) == 0.0 and adverse_bps(3.0) == 3.0
    assert eng.fill(approved("buy", 1.0), book([(99.0, 1.0)], [])) is None
    ioc = eng.fill(approved("buy", 2.0, order_type="limit", limit_price=100.1), BOOK)
    assert ioc is not None and ioc.filled == pytest.approx(1.0)


def test_latency_picks_the_book_in_effect_when_the_order_arrives() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    hist = BookHistory()
    later = book([(100.9, 1.0)], [(101.1, 5.0)])
    hist.add(t0, BOOK)
    hist.add(t0 + timedelta(milliseconds=30), later)
    lat = LatencyModel(base_ms=50.0, jitter_ms=20.0)
    d = lat.delay("c" * 32)
    assert timedelta(milliseconds=50) <= d <= timedelta(milliseconds=70)
    assert d == lat.delay("c" * 32)  # deterministic per order
    assert hist.at(t0 + d) == later  # rebuilt from the kept floats: equal, not the same object
    assert hist.at(t0 + timedelta(milliseconds=10)) == BOOK
    assert hist.at(t0 - timedelta(seconds=1)) == BOOK
    hist.add(t0, BOOK)  # out of order: ignored
    assert hist.latest == later


def test_state_machine() -> None:
    o = OrderTracker("c" * 32, requested=3.0)
    assert o.add_fill(1.0) is OrderState.PARTIALLY_FILLED
    assert o.add_fill(1.0) is OrderState.PARTIALLY_FILLED
    o.advance(OrderState.CANCELLED)
    assert o.done and o.remaining == pytest.approx(1.0)
    with pytest.raises(IllegalTransition):
        o.advance(OrderState.FILLED)
    done = OrderTracker("d" * 32, requested=1.0)
    assert done.add_fill(1.0) is OrderState.FILLED
    with pytest.raises(IllegalTransition):
        done.advance(OrderState.REJECTED)
    rej = OrderTracker("e" * 32, requested=1.0)
    rej.advance(OrderState.REJECTED)
    with pytest.raises(IllegalTransition):
        rej.add_fill(1.0)


def test_price_protection_limits_entries_never_exits() -> None:
    eng = PaperEngine(ExecutionSpec(price_protection_bps=15.0))  # buy entries: nothing above 100.15
    entry = eng.fill(approved("buy", 2.0), BOOK)
    assert entry is not None and entry.filled == pytest.approx(1.0) and entry.avg_price == 100.1
    assert entry.slippage_bps <= 15.0
    moved = book([(104.9, 5.0)], [(105.1, 5.0)])  # the market ran 5 % away since the decision
    assert eng.fill(approved("buy", 2.0), moved) is None  # an entry there would be a different trade
    exit_ = eng.fill(approved("buy", 2.0, reduce_only=True), moved)  # closing risk is never limited
    assert exit_ is not None and exit_.complete and exit_.avg_price == 105.1
    unprotected = PaperEngine(ExecutionSpec(price_protection_bps=None)).fill(approved("buy", 2.0), moved)
    assert unprotected is not None and unprotected.complete
