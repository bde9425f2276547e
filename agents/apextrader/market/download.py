"""Historical OHLCV through ccxt into a polars frame (`apex data download`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from apextrader.contracts.payloads import Exchange
from apextrader.contracts.units import timeframe_seconds
from apextrader.market.sources.ccxt_client import OHLCV_PAGE, make_exchange, market_types_for, point_at

Progress = Callable[[int], None]


class DownloadError(RuntimeError):
    """One line for the user: what failed and why."""


async def download_ohlcv(
    exchange: Exchange,
    symbol: str,
    timeframe: str,
    since_ms: int,
    until_ms: int | None = None,
    *,
    api_url: str | None = None,
    progress: Progress | None = None,
    timeout_ms: int = 10_000,
) -> pl.DataFrame:
    """Closed candles with open time in [since, until) (until: now), oldest first, no duplicates."""
    import ccxt

    tf_ms = timeframe_seconds(timeframe) * 1000
    end = until_ms if until_ms is not None else int(time.time() * 1000)
    client = make_exchange(exchange, timeout_ms=timeout_ms, market_types=market_types_for(exchange, symbol))
    if api_url:
        point_at(client, api_url)
    rows: list[list[float]] = []
    try:
        await client.load_markets()
        if symbol not in client.markets:
            raise DownloadError(f"{exchange} has no market {symbol!r} (ccxt unified symbol, e.g. BTC/USDT)")
        cursor = since_ms
        while cursor < end:
            page = await client.fetch_ohlcv(symbol, timeframe, since=cursor, limit=OHLCV_PAGE[exchange])
            page = [c for c in page if cursor <= c[0] < end and c[0] + tf_ms <= time.time() * 1000]
            if not page:
                break
            rows += page
            cursor = int(page[-1][0]) + tf_ms
            if progress:
                progress(len(page))
    except ccxt.NetworkError as exc:
        raise DownloadError(
            f"cannot reach {exchange} ({type(exc).__name__}): check the network connection"
        ) from None
    except ccxt.BaseError as exc:
        raise DownloadError(
            f"{exchange} refused the request ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    finally:
        await client.close()
    frame = pl.DataFrame(
        rows, schema=["timestamp", "open", "high", "low", "close", "volume"], orient="row"
    ).with_columns(
        pl.col("timestamp").cast(pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
        pl.col("open", "high", "low", "close", "volume").cast(pl.Float64),
    )
    return (
        frame.unique("timestamp", keep="first", maintain_order=True)
        .sort("timestamp")
        .with_columns(symbol=pl.lit(symbol), exchange=pl.lit(exchange))
    )
