"""Builders shared by the risk/execution/watcher tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apextrader.contracts import SignalProposed
from apextrader.contracts.payloads import Exchange, SignalSide

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def signal(
    side: SignalSide = "long",
    price: float = 100.0,
    stop: float | None = 98.0,
    exchange: Exchange = "binance",
    symbol: str = "ETH/USDT:USDT",
    atr: float | None = None,
    minute: int = 0,
) -> SignalProposed:
    return SignalProposed(
        strategy="breakout",
        exchange=exchange,
        symbol=symbol,
        side=side,
        strength=1.0,
        bar_time=T0 + timedelta(minutes=minute),
        price=price,
        stop=stop,
        atr=atr,
    )
