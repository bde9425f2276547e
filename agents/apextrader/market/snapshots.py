"""Building `MarketSnapshot` payloads from bar data (shared by the sources).

Snapshots are assembled as plain dicts in the model's field order (`snapshot_dict`) and either
validated once (`snapshot`: one pass through pydantic-core for the whole tree) or, by the
synthetic source whose numbers satisfy the constraints by construction, published as they are
(`market.wire`).
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
    amounts = [unit * (1 + 0.25 * i) for i in range(levels)]  # the same on both sides
    best_bid, best_ask = mid - half, mid + half
    bids = [{"price": best_bid - i * step, "amount": a} for i, a in enumerate(amounts)]
    asks = [{"price": best_ask + i * step, "amount": a} for i, a in enumerate(amounts)]
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


def snapshot_dict(
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
) -> dict[str, Any]:
    """A snapshot as a dict with every `MarketSnapshot` field in declaration order (the wire form
    when `bar`, `depth` and `liqs` are complete and in their models' field order too)."""
    return {
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
        "liquidations_24h": None,
        "seq": seq,
    }


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
    """The validated `MarketSnapshot`: one pass through pydantic-core for the whole tree."""
    fields = snapshot_dict(exchange=exchange, symbol=symbol, timeframe=timeframe, bar=bar, closed=closed,
                           backfill=backfill, seq=seq, quality=quality, funding_rate=funding_rate,
                           depth=depth, liqs=liqs)  # fmt: skip
    return MarketSnapshot.model_validate(fields)


def bar_close_time(open_time: datetime, seconds: int) -> datetime:
    return open_time + timedelta(seconds=seconds)
