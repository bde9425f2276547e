"""Building `MarketSnapshot` payloads from bar data (shared by the sources).

Snapshots are assembled as plain dicts and validated once (`MarketSnapshot.model_validate`): one
pass through pydantic-core instead of one per nested model, which is what lets the scanner
publish tens of thousands of snapshots a second.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from apextrader.contracts.payloads import Exchange, MarketSnapshot, Quality

BarDict = dict[str, Any]
BookDict = dict[str, list[dict[str, float]]]


def synthetic_book(mid: float, spread_bps: float, depth: float, levels: int) -> BookDict:
    """A book around `mid`: the given spread, `depth` base units spread over `levels` per side with
    more size further out, level spacing growing with the spread (volatile = wide and thin)."""
    half = mid * spread_bps / 20_000
    step = max(mid * spread_bps / 10_000, mid * 1e-6)
    unit = depth / (levels + 0.25 * levels * (levels - 1) / 2)
    bids = [{"price": mid - half - i * step, "amount": unit * (1 + 0.25 * i)} for i in range(levels)]
    asks = [{"price": mid + half + i * step, "amount": unit * (1 + 0.25 * i)} for i in range(levels)]
    return {"bids": bids, "asks": asks}


def liquidations(
    long_notional: float, short_notional: float, price: float, at: datetime
) -> list[dict[str, Any]]:
    """Liquidated longs close with a sell, liquidated shorts with a buy."""
    out = []
    if long_notional > 0:
        out.append({"side": "sell", "price": price, "amount": long_notional / price, "time": at})
    if short_notional > 0:
        out.append({"side": "buy", "price": price, "amount": short_notional / price, "time": at})
    return out


def snapshot(
    *,
    exchange: Exchange,
    symbol: str,
    timeframe: str,
    bar: BarDict,
    closed: bool,
    backfill: bool,
    seq: int,
    quality: Quality = "ok",
    funding_rate: float | None = None,
    depth: BookDict | None = None,
    liqs: list[dict[str, Any]] | None = None,
) -> MarketSnapshot:
    return MarketSnapshot.model_validate(
        {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": timeframe,
            "bar": bar,
            "closed": closed,
            "backfill": backfill,
            "quality": quality,
            "funding_rate": funding_rate,
            "depth": depth,
            "liquidations": liqs or [],
            "seq": seq,
        }
    )


def bar_close_time(open_time: datetime, seconds: int) -> datetime:
    return open_time + timedelta(seconds=seconds)
