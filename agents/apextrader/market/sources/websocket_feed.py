"""One exchange's public data through ccxt.pro websockets: candles, book, taker trades, liquidations.

`StreamFeed` is an `ExchangeFeed` (history, funding over REST, gap flags and snapshot building are
the REST feed's) whose live data comes from four *watchers* per symbol, each one ccxt.pro
`watch_*` call that folds what it returns into the feed's state. `CcxtStreamSource` repeats every
watcher in its own task; `drain()` turns the state into snapshots every `1/hz` seconds.

- A candle is closed once a later candle arrived on the same subscription: messages on one
  connection are ordered, so its final update came first. A candle whose last update came on a
  dropped connection, and candles missed while disconnected, are fetched over REST instead.
- `buy_volume` is the taker-buy volume of the bar's trades, only for bars the trade stream covered
  from their open (the bar forming when it (re)subscribed gets None, so CVD uses the candle
  estimate for that bar instead of half the flow). Trades travel on their own connection, so a
  closed bar waits up to `trade_grace_s` for the trade stream to pass its close.
- The book is the stream's top `depth_levels` (contracts in base units); older than `stale_after`
  is `stale`, best bid >= best ask is `crossed`, and either way no depth is published.
- Liquidations go on the closed bar they happened in, as the side of the closing order (Binance
  sends that side; Bybit sends the liquidated position's side, which is flipped).
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from apextrader.contracts.payloads import MarketSnapshot, Quality
from apextrader.market.snapshots import BookDict
from apextrader.market.sources import intake
from apextrader.market.sources.ccxt_client import describe, stream_book_limit
from apextrader.market.sources.rest_feed import Candle, ExchangeFeed, _dt

log = logging.getLogger(__name__)
#: `watcher(fresh)`: one watch call; `fresh` is True on the first call of a (re)subscription.
Watcher = Callable[[bool], Awaitable[None]]
TRADE_GRACE_S = 1.0
_WATCH_TRADES_PARAMS: dict[str, dict[str, Any]] = {"binance": {"name": "aggTrade"}}


@dataclass
class _Streamed:
    candles: dict[int, tuple[Candle, int, float]] = field(default_factory=dict)  # open -> (c, epoch, seen)
    epoch: int = 0  # candle subscription number
    book: BookDict | None = None
    book_ts: int | None = None
    buys: dict[int, float] = field(default_factory=dict)  # bar open -> taker-buy volume
    covered_from: int | None = None  # trades are complete from this market time on
    last_trade: int = 0
    liqs: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


class StreamFeed(ExchangeFeed):
    def __init__(self, *args: Any, trade_grace_s: float = TRADE_GRACE_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trade_grace_s = trade_grace_s
        self.streamed: dict[str, _Streamed] = {}
        self.messages = 0  # watch results since the source last looked
        self.last_error: str | None = None

    async def open(self) -> None:
        await super().open()
        self.streamed = {s: _Streamed() for s in self.symbols}

    def watchers(self) -> dict[str, Watcher]:
        out: dict[str, Watcher] = {}
        for s in self.symbols:
            out[f"candles {s}"] = functools.partial(self._candles, s)
            out[f"book {s}"] = functools.partial(self._book_stream, s)
            out[f"trades {s}"] = functools.partial(self._trades, s)
            out[f"liquidations {s}"] = functools.partial(self._liquidations_stream, s)
        return out

    def take_activity(self) -> tuple[int, str | None]:
        """Watch results and the last watch error since the previous call."""
        seen, error = self.messages, self.last_error
        self.messages, self.last_error = 0, None
        return seen, error

    def _size(self, symbol: str) -> float:
        return float(self.client.markets[symbol].get("contractSize") or 1.0)

    # -- watchers -------------------------------------------------------------------------------
    async def _candles(self, symbol: str, fresh: bool) -> None:
        ss = self.streamed[symbol]
        if fresh:
            ss.epoch += 1
        for c in await self.client.watch_ohlcv(symbol, self.timeframe):
            ss.candles[int(c[0])] = (list(c[:6]), ss.epoch, time.monotonic())
        self.messages += 1

    async def _book_stream(self, symbol: str, fresh: bool) -> None:
        ob = await self.client.watch_order_book(symbol, stream_book_limit(self.exchange, self.depth_levels))
        size, n, ss = self._size(symbol), self.depth_levels, self.streamed[symbol]
        ss.book = {
            "bids": [{"price": p, "amount": a * size} for p, a, *_ in ob["bids"][:n]],
            "asks": [{"price": p, "amount": a * size} for p, a, *_ in ob["asks"][:n]],
        }
        ss.book_ts = ob.get("timestamp")
        self.messages += 1

    async def _trades(self, symbol: str, fresh: bool) -> None:
        params = _WATCH_TRADES_PARAMS.get(self.exchange, {})
        trades = await self.client.watch_trades(symbol, params=params)
        ss, size = self.streamed[symbol], self._size(symbol)
        if fresh:  # everything from here on arrives; what traded before the subscription did not
            ss.covered_from = self.clock_ms()
        for t in trades:
            ts = int(t["timestamp"])
            ss.last_trade = max(ss.last_trade, ts)
            if t["side"] == "buy":
                bar = ts - ts % self.tf_ms
                ss.buys[bar] = ss.buys.get(bar, 0.0) + float(t["amount"]) * size
        self.messages += 1

    async def _liquidations_stream(self, symbol: str, fresh: bool) -> None:
        ss, size = self.streamed[symbol], self._size(symbol)
        parse = functools.partial(self._liquidation, size=size)
        for raw in await self.client.watch_liquidations(symbol):
            liq = intake.liquidation(self.exchange, raw, parse)
            if liq is not None:
                ss.liqs.append((int(raw["timestamp"]), liq))
        self.messages += 1

    def _liquidation(self, liq: dict[str, Any], size: float) -> dict[str, Any]:
        side = str(liq["side"])
        if self.exchange == "bybit":  # Bybit names the liquidated position's side
            side = "sell" if side == "buy" else "buy"
        ts = int(liq["timestamp"])
        amount = float(liq["contracts"]) * float(liq.get("contractSize") or size)
        return {"side": side, "price": float(liq["price"]), "amount": amount, "time": _dt(ts)}

    # -- snapshots ------------------------------------------------------------------------------
    async def drain(self) -> list[MarketSnapshot]:
        out: list[MarketSnapshot] = []
        stale: list[str] = []
        for symbol in self.symbols:
            snaps, reason = await self._drain_symbol(symbol)
            out += snaps
            if reason:
                stale.append(reason)
        self.stale_reason = stale[0] if stale else None
        return out

    def _buy_volume(self, ss: _Streamed, c: Candle) -> float | None:
        if ss.covered_from is None or ss.covered_from > c[0]:
            return None
        return min(ss.buys.get(c[0], 0.0), float(c[5] or 0.0))

    def _book_quality(self, ss: _Streamed, now: int) -> Quality:
        if ss.book is None or ss.book_ts is None or now - ss.book_ts > self.stale_after_ms:
            return "stale"
        if not ss.book["bids"] or not ss.book["asks"]:
            return "stale"
        return "crossed" if ss.book["bids"][0]["price"] >= ss.book["asks"][0]["price"] else "ok"

    def _closable(self, symbol: str) -> tuple[list[Candle], bool]:
        """Stream candles now closed, oldest first, and whether REST must stand in for some."""
        ss, last = self.streamed[symbol], self.state[symbol].last_closed
        opens = sorted(ss.candles)
        out: list[Candle] = []
        from_rest = False
        for o, later in itertools.pairwise(opens):
            if last is not None and o <= last:
                continue
            c, epoch, _ = ss.candles[o]
            _, later_epoch, later_seen = ss.candles[later]
            covered = ss.covered_from is not None and ss.covered_from <= o
            if (
                covered
                and ss.last_trade < o + self.tf_ms
                and time.monotonic() - later_seen < self.trade_grace_s
            ):
                break  # the bar's last trades may still be on their way
            from_rest |= later_epoch != epoch
            out.append(c)
        if out and last is not None and out[0][0] - last > self.tf_ms:
            from_rest = True  # candles missed while disconnected
        return out, from_rest

    async def _drain_symbol(self, symbol: str) -> tuple[list[MarketSnapshot], str | None]:
        st, ss = self.state[symbol], self.streamed[symbol]
        if not ss.candles:
            return [], None
        now = self.clock_ms()
        funding = await self._funding_or_last(symbol, now)
        closed, from_rest = self._closable(symbol)
        if from_rest:
            closed = await self._rest_closed(symbol, closed, now)
        closed = [[*c[:6], self._buy_volume(ss, c)] for c in closed]
        book_quality = self._book_quality(ss, now)
        book = ss.book if book_quality == "ok" else None
        if closed:  # liquidations of the bars closing now ride on the last of them
            end = closed[-1][0] + self.tf_ms
            st.pending_liqs = [d for ts, d in ss.liqs if ts < end]
            ss.liqs = [(ts, d) for ts, d in ss.liqs if ts >= end]
        out = self._closed(symbol, closed, funding, backfill=False, book=book)
        ss.liqs = [(int(d["time"].timestamp() * 1000), d) for d in st.pending_liqs] + ss.liqs
        st.pending_liqs = []
        newest = ss.candles[max(ss.candles)][0]
        if st.last_closed is not None and newest[0] <= st.last_closed:
            return out, None  # the stream has not caught up with the REST history yet
        stale_reason = None
        if newest[0] + 2 * self.tf_ms < now:
            stale_reason = f"{symbol}: no new candle for {(now - newest[0]) / 1000:.0f}s"
        quality: Quality = "stale" if stale_reason else book_quality
        forming = [*newest, self._buy_volume(ss, newest)]
        snap = self._snapshot(symbol, forming, closed=False, backfill=False, quality=quality,
                              funding=funding, book=book if quality == "ok" else None)  # fmt: skip
        if snap is not None:
            out.append(snap)
        self._prune(symbol)
        return out, stale_reason

    async def _funding_or_last(self, symbol: str, now: int) -> float | None:
        """Funding over REST; when that fails the streams go on with the last known rate."""
        try:
            return await self._funding(symbol, now)
        except Exception as exc:  # any REST failure: keep streaming, retry later
            st = self.state[symbol]
            st.funding_at = now
            log.warning("funding poll failed", extra={"exchange": self.exchange, "reason": describe(exc)})
            return st.funding

    async def _rest_closed(self, symbol: str, streamed: list[Candle], now: int) -> list[Candle]:
        """Closed candles since the last published one from REST, the stream's where REST has none."""
        last = self.state[symbol].last_closed
        newest = max(self.streamed[symbol].candles)
        count = 2 if last is None else (newest - last) // self.tf_ms + 1
        rest = {c[0]: c for c in await self._latest(symbol, int(min(count, 10_000)))}
        merged = {c[0]: c for c in streamed} | {
            o: c
            for o, c in rest.items()
            if o + self.tf_ms <= now and o < newest and (last is None or o > last)
        }
        return [merged[o] for o in sorted(merged)]

    def _prune(self, symbol: str) -> None:
        last, ss = self.state[symbol].last_closed, self.streamed[symbol]
        if last is None:
            return
        ss.candles = {o: v for o, v in ss.candles.items() if o > last}
        ss.buys = {o: v for o, v in ss.buys.items() if o > last}
