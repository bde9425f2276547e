"""`PaperVenue`: book fills where the market has depth, the bar model where it has none (the open
of the first bar after the order reaches the venue, or the close in effect then, plus half the
spread and the slippage; never a price from before the order existed), UNKNOWN (never a
rejection) while the data it needs has not arrived."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apextrader.contracts import OrderApproved, OrderBook
from apextrader.contracts.payloads import Bar, BookLevel, MarketSnapshot
from apextrader.contracts.spec import ExecutionSpec
from apextrader.venues import OrderState, PaperVenue

T0 = datetime(2026, 1, 5, tzinfo=UTC)
TF = timedelta(minutes=15)


def snap(k: int, open_: float, close: float, depth: bool = False) -> MarketSnapshot:
    bar = Bar(
        open_time=T0 + k * TF,
        open=open_,
        high=max(open_, close),
        low=min(open_, close),
        close=close,
        volume=1.0,
    )
    book = (
        OrderBook(
            bids=[BookLevel(price=close - 0.5, amount=10.0)], asks=[BookLevel(price=close + 0.5, amount=10.0)]
        )
        if depth
        else None
    )
    return MarketSnapshot(exchange="bybit", symbol="ETH/USDT:USDT", timeframe="15m", bar=bar, depth=book)


def order(side: str = "buy", bar: int | None = 0, mid: float = 100.0, **kw: object) -> OrderApproved:
    return OrderApproved.model_validate(
        {
            "client_order_id": "c" * 32,
            "exchange": "bybit",
            "symbol": "ETH/USDT:USDT",
            "side": side,
            "amount": 2.0,
            "mid_at_decision": mid,
            "notional": 2.0 * mid,
            "leverage": 1.0,
            "weight_applied": 100,
            "bar_time": None if bar is None else T0 + bar * TF,
            **kw,
        }
    )


def venue(**bar_fill: object) -> PaperVenue:
    return PaperVenue(ExecutionSpec.model_validate({"barFill": bar_fill, "takerFeeBps": {"bybit": 5.0}}))


async def test_next_open_plus_half_spread_and_slippage_against_the_trader() -> None:
    v = venue(price="next_open", spreadBps=4.0, slippageBps=1.0)
    now = datetime.now(UTC)
    v.observe(now, snap(0, 99.0, 100.0))
    waiting = await v.submit(order(mid=101.0), now, 0.0)
    assert waiting.state is OrderState.UNKNOWN and "waiting for the next bar" in waiting.message
    v.observe(now + timedelta(seconds=1), snap(1, 101.0, 102.0))
    buy = await v.submit(order(mid=101.0), now, 0.0)
    assert buy.state is OrderState.FILLED and buy.fill_model == "bar" and buy.filled == 2.0
    assert buy.avg_price == pytest.approx(101.0 * (1 + 3e-4))  # 4/2 + 1 bps
    assert buy.fee == pytest.approx(2.0 * buy.avg_price * 5e-4)  # type: ignore[operator]
    sell = await v.submit(order("sell", mid=101.0), now, 0.0)
    assert sell.avg_price == pytest.approx(101.0 * (1 - 3e-4))


async def test_decision_close_model_and_price_protection() -> None:
    v = venue(price="close", spreadBps=0.0, slippageBps=0.0)
    now = datetime.now(UTC)
    v.observe(now, snap(0, 99.0, 100.0))
    filled = await v.submit(order(mid=100.0), now, 0.0)
    assert filled.state is OrderState.FILLED and filled.avg_price == pytest.approx(100.0)
    gap = venue(price="next_open")
    gap.observe(now, snap(0, 99.0, 100.0))
    gap.observe(now + timedelta(seconds=1), snap(1, 110.0, 111.0))  # 10 % away: beyond the protection
    refused = await gap.submit(order(mid=100.0), now, 0.0)
    assert refused.state is OrderState.REJECTED and refused.reason == "no_liquidity"
    exit_ = await gap.submit(order("sell", mid=100.0, reduce_only=True), now, 0.0)
    assert exit_.state is OrderState.FILLED  # exits are never limited


async def test_a_bar_that_opened_before_the_order_existed_is_never_its_price() -> None:
    """A replay whose signals trail the market: the fill is at the market the order meets."""
    v = venue(price="next_open", spreadBps=0.0, slippageBps=0.0)
    now = datetime.now(UTC)
    for k in range(5):  # bars 0..4 all published before the order was approved
        v.observe(now - timedelta(seconds=5 - k), snap(k, 100.0 + k, 100.0 + k))
    late = order(bar=0, mid=104.0)  # its signal was on bar 0; bar 1 opened long ago
    assert (await v.submit(late, now, 0.0)).state is OrderState.UNKNOWN
    v.observe(now + timedelta(seconds=1), snap(5, 104.2, 104.4))
    filled = await v.submit(late, now, 0.0)
    assert filled.avg_price == pytest.approx(104.2)


async def test_depth_means_the_book_model_and_no_data_means_unknown() -> None:
    v = venue()
    now = datetime.now(UTC)
    none = await v.submit(order(), now, 0.0)
    assert none.state is OrderState.UNKNOWN
    v.observe(now - timedelta(seconds=1), snap(0, 99.0, 100.0, depth=True))
    v.observe(now, snap(1, 120.0, 100.0, depth=True))
    booked = await v.submit(order(mid=100.2), now, 0.0)
    assert booked.fill_model == "book" and booked.avg_price == pytest.approx(100.5)


async def test_backfill_and_bad_quality_bars_are_not_a_market() -> None:
    v = venue()
    now = datetime.now(UTC)
    v.observe(now, snap(0, 99.0, 100.0).model_copy(update={"backfill": True}))
    v.observe(now, snap(1, 99.0, 100.0).model_copy(update={"quality": "gap"}))
    assert (await v.submit(order(), now, 0.0)).state is OrderState.UNKNOWN


async def test_a_restarted_paper_order_is_finished_not_refilled() -> None:
    v = venue()
    out = await v.submit(order(), datetime.now(UTC), 0.5)
    assert out.state is OrderState.CANCELLED and out.filled == 0.5
