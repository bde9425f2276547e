"""One exchange's public data through ccxt: OHLCV history and polls with book, funding, liquidations.

Every value goes through ccxt's own parsers (`fetch_ohlcv`, `fetch_order_book`,
`fetch_funding_rate`); OKX's liquidation orders, which ccxt has no unified call for, go through
ccxt's generic `request` (same signing, throttling and error mapping) and a small parser here.
Binance and Bybit publish liquidations only on websockets, so their snapshots carry none.

Quality, decided per poll and symbol (docs/conventions.md §6):
- `gap`: closed candles missing between the last published bar and the next (the poll asks for
  enough candles to cover the time since, so a hole is the exchange's, not ours);
- `stale`: the newest candle is more than two bars old, or the book is older than `stale_after`;
- `crossed`: best bid >= best ask even after one immediate refetch.
A stale or crossed book is never published (depth is left out).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import ccxt.async_support as ccxt_async
from pydantic import ValidationError

from apextrader.contracts.payloads import Exchange, MarketSnapshot, Quality
from apextrader.contracts.units import timeframe_seconds
from apextrader.market.snapshots import BookDict, snapshot
from apextrader.market.sources.ccxt_client import OHLCV_PAGE, book_limit

log = logging.getLogger(__name__)
Candle = list[Any]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass
class _SymbolState:
    last_closed: int | None = None  # open time (ms) of the last published closed bar
    seq: int = 0
    funding: float | None = None
    funding_at: float = -1e18
    liq_at: float = -1e18
    liq_seen: int = 0  # newest liquidation time (ms) already published
    pending_liqs: list[dict[str, Any]] = field(default_factory=list)


class ExchangeFeed:
    def __init__(
        self,
        exchange: Exchange,
        client: ccxt_async.Exchange,
        symbols: list[str],
        *,
        timeframe: str,
        depth_levels: int,
        stale_after_s: float,
        clock_ms: Callable[[], int] = wall_clock_ms,
        funding_every_s: float = 30.0,
        liquidations_every_s: float = 10.0,
    ) -> None:
        self.exchange, self.client, self.wanted = exchange, client, symbols
        self.timeframe, self.tf_ms = timeframe, timeframe_seconds(timeframe) * 1000
        self.depth_levels, self.stale_after_ms = depth_levels, stale_after_s * 1000
        self.clock_ms = clock_ms
        self.funding_every_ms, self.liq_every_ms = funding_every_s * 1000, liquidations_every_s * 1000
        self.symbols: list[str] = []
        self.opened = False
        self.state: dict[str, _SymbolState] = {}
        #: Why the last poll's data was not usable (stale candles); None when it was.
        self.stale_reason: str | None = None

    async def open(self) -> None:
        await self.client.load_markets()
        self.symbols = [s for s in self.wanted if s in self.client.markets]
        for s in sorted(set(self.wanted) - set(self.symbols)):
            log.warning("symbol not listed on exchange", extra={"exchange": self.exchange, "symbol": s})
        self.state = {s: _SymbolState() for s in self.symbols}
        self.opened = True

    async def close(self) -> None:
        await self.client.close()

    # -- history --------------------------------------------------------------------------------
    async def _latest(self, symbol: str, count: int) -> list[Candle]:
        """The newest `count` candles, oldest first, paging backwards (no client-side clock)."""
        page = OHLCV_PAGE[self.exchange]
        out: list[Candle] = []
        until: int | None = None
        while len(out) < count:
            params = {"until": until} if until is not None else {}
            chunk = await self.client.fetch_ohlcv(
                symbol, self.timeframe, limit=min(page, count - len(out)), params=params
            )
            chunk = [c for c in chunk if until is None or c[0] < until]
            if not chunk:
                break
            out = chunk + out
            until = chunk[0][0]
        return out[-count:]

    async def backfill(self, bars: int) -> list[MarketSnapshot]:
        out: list[MarketSnapshot] = []
        if bars <= 0:
            return out
        for symbol in self.symbols:
            candles = await self._latest(symbol, bars + 1)
            now = self.clock_ms()
            closed = [c for c in candles if c[0] + self.tf_ms <= now][-bars:]
            funding = await self._funding(symbol, now)
            out += self._closed(symbol, closed, funding, backfill=True)
        return out

    # -- polling --------------------------------------------------------------------------------
    async def poll(self) -> list[MarketSnapshot]:
        results = await asyncio.gather(*(self._poll_symbol(s) for s in self.symbols))
        stale = [r for _, r in results if r]
        self.stale_reason = stale[0] if stale else None
        return [snap for snaps, _ in results for snap in snaps]

    async def _poll_symbol(self, symbol: str) -> tuple[list[MarketSnapshot], str | None]:
        st = self.state[symbol]
        now = self.clock_ms()
        behind = 2 if st.last_closed is None else (now - st.last_closed) // self.tf_ms + 1
        candles = await self._latest(symbol, int(min(behind, 10_000)) + 1)
        book, book_quality = await self._book(symbol, now)
        funding = await self._funding(symbol, now)
        await self._liquidations(symbol, now)
        new_closed = [
            c
            for c in candles
            if c[0] + self.tf_ms <= now and (st.last_closed is None or c[0] > st.last_closed)
        ]
        out = self._closed(symbol, new_closed, funding, backfill=False, book=book)
        stale_reason = None
        newest = candles[-1][0] if candles else None
        if newest is None or newest + 2 * self.tf_ms < now:
            stale_reason = f"{symbol}: no new candle for {(now - (newest or 0)) / 1000:.0f}s"
        forming = [c for c in candles if c[0] + self.tf_ms > now]
        if forming:
            quality: Quality = "stale" if stale_reason else book_quality
            snap = self._snapshot(symbol, forming[-1], closed=False, backfill=False, quality=quality,
                                  funding=funding, book=book if quality == "ok" else None)  # fmt: skip
            if snap is not None:
                out.append(snap)
        return out, stale_reason

    def _closed(
        self,
        symbol: str,
        candles: list[Candle],
        funding: float | None,
        *,
        backfill: bool,
        book: BookDict | None = None,
    ) -> list[MarketSnapshot]:
        st = self.state[symbol]
        out = []
        for i, c in enumerate(candles):
            prev = st.last_closed
            quality: Quality = "gap" if prev is not None and c[0] - prev > self.tf_ms else "ok"
            last = i == len(candles) - 1
            snap = self._snapshot(
                symbol,
                c,
                closed=True,
                backfill=backfill,
                quality=quality,
                funding=funding,
                book=book if last and not backfill else None,
                liqs=st.pending_liqs if last and not backfill else None,
            )
            st.last_closed = c[0]
            if snap is not None:
                out.append(snap)
                if last and not backfill:
                    st.pending_liqs = []
        return out

    def _snapshot(
        self,
        symbol: str,
        c: Candle,
        *,
        closed: bool,
        backfill: bool,
        quality: Quality,
        funding: float | None,
        book: BookDict | None,
        liqs: list[dict[str, Any]] | None = None,
    ) -> MarketSnapshot | None:
        st = self.state[symbol]
        st.seq += 1
        bar = {"open_time": _dt(c[0]), "open": c[1], "high": c[2], "low": c[3], "close": c[4],
               "volume": c[5] or 0.0}  # fmt: skip
        if len(c) > 6:  # a streamed candle carries its taker-buy volume (or None) after ccxt's six
            bar["buy_volume"] = c[6]
        try:
            return snapshot(exchange=self.exchange, symbol=symbol, timeframe=self.timeframe, bar=bar,
                            closed=closed, backfill=backfill, seq=st.seq, quality=quality,
                            funding_rate=funding, depth=book, liqs=liqs)  # fmt: skip
        except ValidationError as exc:
            log.warning(
                "invalid candle not published",
                extra={"exchange": self.exchange, "symbol": symbol, "candle": c, "error": str(exc)[:200]},
            )
            return None

    async def _book(self, symbol: str, now: int) -> tuple[BookDict | None, Quality]:
        limit = book_limit(self.exchange, self.depth_levels)
        size = self.client.markets[symbol].get("contractSize") or 1.0
        for attempt in range(2):
            ob = await self.client.fetch_order_book(symbol, limit)
            bids = [{"price": p, "amount": a * size} for p, a, *_ in ob["bids"][: self.depth_levels]]
            asks = [{"price": p, "amount": a * size} for p, a, *_ in ob["asks"][: self.depth_levels]]
            ts = ob.get("timestamp")
            if ts is None or now - ts > self.stale_after_ms:
                return None, "stale"
            if not bids or not asks:
                return None, "stale"
            if bids[0]["price"] < asks[0]["price"]:
                return {"bids": bids, "asks": asks}, "ok"
            if attempt == 0:
                log.info("crossed book, refetching", extra={"exchange": self.exchange, "symbol": symbol})
        return None, "crossed"

    async def _funding(self, symbol: str, now: int) -> float | None:
        st = self.state[symbol]
        if now - st.funding_at >= self.funding_every_ms:
            fr = await self.client.fetch_funding_rate(symbol)
            st.funding, st.funding_at = fr.get("fundingRate"), now
        return st.funding

    async def _liquidations(self, symbol: str, now: int) -> None:
        """OKX only: filled liquidation orders of the instrument family since the last look."""
        st = self.state[symbol]
        if self.exchange != "okx" or now - st.liq_at < self.liq_every_ms:
            return
        market = self.client.markets[symbol]
        response = await self.client.request(
            "public/liquidation-orders",
            ["public"],
            "GET",
            {"instType": "SWAP", "instFamily": market["info"]["instFamily"], "state": "filled"},
        )
        st.liq_at = now
        size = market.get("contractSize") or 1.0
        newest = st.liq_seen
        for entry in response.get("data", []):
            if entry.get("instId") != market["id"]:
                continue
            for d in entry.get("details", []):
                ts = int(d["ts"])
                if ts <= st.liq_seen:
                    continue
                newest = max(newest, ts)
                st.pending_liqs.append({"side": d["side"], "price": float(d["bkPx"]),
                                        "amount": float(d["sz"]) * size, "time": _dt(ts)})  # fmt: skip
        st.liq_seen = newest
