"""The ccxt source against recorded Binance/Bybit/OKX bodies served locally, with faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import pytest

from apextrader.contracts.payloads import Exchange, MarketSnapshot
from apextrader.market.sources.ccxt_client import Backoff
from apextrader.market.sources.rest_source import CcxtSource
from tests.market.fake_exchanges import FIXTURES, MINUTE, T0, FakeExchanges

EXCHANGES: list[Exchange] = ["binance", "bybit", "okx"]
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]


def _source(server: FakeExchanges, exchanges: list[Exchange] = EXCHANGES, **kw: object) -> CcxtSource:
    args: dict[str, object] = {
        "exchanges": exchanges,
        "symbols": SYMBOLS,
        "backfill_bars": 40,
        "hz": 20.0,
        "stale_after_s": 600.0,
        "client_factory": lambda e: server.client(e, timeout_ms=1_000),
        "clock_ms": lambda: server.now_ms,
        "backoff": Backoff(base=0.01, cap=0.05),
    }
    return CcxtSource(**{**args, **kw})  # type: ignore[arg-type]


class Live:
    """Runs `source.live()` in the background, collecting snapshots and health transitions."""

    def __init__(self, source: CcxtSource) -> None:
        self.source = source
        self.snaps: list[MarketSnapshot] = []
        self.transitions: list[tuple[Exchange, bool, str]] = []
        source.health.subscribe(lambda e, up, why: self.transitions.append((e, up, why)))
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for batch in self.source.live():
            self.snaps += batch

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def until(self, cond: Callable[[], bool], within_s: float = 8.0) -> None:
        """Poll `cond` (the source runs in another task) until it holds or `within_s` passes."""
        async with asyncio.timeout(within_s):
            while not cond():  # noqa: ASYNC110 - the condition is data, not an event
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.source.close()


@pytest.fixture
async def opened(fake_exchanges: FakeExchanges) -> AsyncIterator[tuple[CcxtSource, list[MarketSnapshot]]]:
    source = _source(fake_exchanges)
    await source.open()
    back = [s async for batch in source.backfill() for s in batch]
    yield source, back
    await source.close()


def _recorded_close(exchange: str, symbol: str, open_ms: int) -> float:
    base = symbol.split("/")[0]
    if exchange == "binance":
        rows = json.loads((FIXTURES / "binance" / f"klines_{base}USDT.json").read_text())
        return float(next(r[4] for r in rows if r[0] == open_ms))
    if exchange == "bybit":
        body = json.loads((FIXTURES / "bybit" / f"kline_{base}USDT.json").read_text())
        return float(next(r[4] for r in body["result"]["list"] if int(r[0]) == open_ms))
    body = json.loads((FIXTURES / "okx" / f"candles_{base}-USDT-SWAP.json").read_text())
    return float(next(r[4] for r in body["data"] if int(r[0]) == open_ms))


def _ms(s: MarketSnapshot) -> int:
    return int(s.bar.open_time.timestamp() * 1000)


async def test_backfill_is_the_closed_history_parsed_by_ccxt(
    opened: tuple[CcxtSource, list[MarketSnapshot]],
) -> None:
    _, back = opened
    for e in EXCHANGES:
        for sym in SYMBOLS:
            series = [s for s in back if s.exchange == e and s.symbol == sym]
            assert [_ms(s) for s in series] == [
                T0 + i * MINUTE for i in range(210, 250)
            ]  # forming 250 left out
            assert all(s.backfill and s.closed and s.quality == "ok" and s.depth is None for s in series)
            assert series[-1].bar.close == _recorded_close(e, sym, T0 + 249 * MINUTE)
            assert series[-1].funding_rate is not None
            assert [s.seq for s in series] == list(range(1, 41))
    okx_btc = next(s for s in back if s.exchange == "okx")
    assert okx_btc.bar.volume > 0  # OKX swap volume: ccxt's base-currency column


async def test_live_poll_publishes_closed_and_forming_bars_with_books(
    opened: tuple[CcxtSource, list[MarketSnapshot]], fake_exchanges: FakeExchanges
) -> None:
    source, _ = opened
    live = Live(source)
    fake_exchanges.advance(1)  # candle 250 closes, 251 forms
    live.start()
    try:
        await live.until(lambda: {(s.exchange, s.symbol) for s in live.snaps if s.closed} >= {
            (e, sym) for e in EXCHANGES for sym in SYMBOLS})  # fmt: skip
    finally:
        await live.stop()
    for e in EXCHANGES:
        closed = [s for s in live.snaps if s.exchange == e and s.symbol == "BTC/USDT:USDT" and s.closed]
        assert [_ms(s) for s in closed] == [T0 + 250 * MINUTE]  # exactly once, however many polls
        forming = [s for s in live.snaps if s.exchange == e and not s.closed]
        assert forming and all(_ms(s) == T0 + 251 * MINUTE for s in forming)
        book = forming[0].depth
        assert book is not None and len(book.bids) == 10 and not book.crossed
        assert forming[0].quality == "ok" and not forming[0].backfill
    okx = [s for s in live.snaps if s.exchange == "okx" and s.symbol == "BTC/USDT:USDT"]
    liqs = [liq for s in okx for liq in s.liquidations]
    assert [(x.side, x.amount) for x in liqs] == [("sell", 0.12), ("buy", 0.03), ("sell", 0.4)]  # sz x ctVal
    okx_book = next(s.depth for s in okx if s.depth)
    assert okx_book is not None and okx_book.bids[0].amount == pytest.approx(3.83)  # 383 contracts x 0.01


async def test_rate_limit_is_retried_with_backoff_and_stays_up(
    opened: tuple[CcxtSource, list[MarketSnapshot]], fake_exchanges: FakeExchanges
) -> None:
    source, _ = opened
    fake_exchanges.faults["binance"].rate_limited = 2
    fake_exchanges.faults["bybit"].rate_limited = 2  # Bybit's 200 + retCode 10006
    fake_exchanges.faults["okx"].rate_limited = 2
    fake_exchanges.advance(1)
    live = Live(source)
    live.start()
    try:
        await live.until(lambda: {s.exchange for s in live.snaps if s.closed} == set(EXCHANGES))
    finally:
        await live.stop()
    assert all(f.rate_limited == 0 for f in fake_exchanges.faults.values())
    assert live.transitions == []  # two failures in a row stay under max_failures
    assert source.health.all_up


async def test_timeouts_take_one_exchange_down_and_back_without_stopping_the_others(
    opened: tuple[CcxtSource, list[MarketSnapshot]], fake_exchanges: FakeExchanges
) -> None:
    source, _ = opened
    fake_exchanges.faults["bybit"].slow_s = 1.5  # > the client's 1 s timeout
    live = Live(source)
    live.start()
    try:
        await live.until(lambda: ("bybit", False) in [(e, up) for e, up, _ in live.transitions])
        assert not source.health.up("bybit") and source.health.up("binance")
        reason = next(why for e, up, why in live.transitions if e == "bybit")
        assert reason.startswith("RequestTimeout")
        before = len([s for s in live.snaps if s.exchange == "binance"])
        await live.until(lambda: len([s for s in live.snaps if s.exchange == "binance"]) > before)
        fake_exchanges.faults["bybit"].slow_s = 0.0
        await live.until(lambda: ("bybit", True) in [(e, up) for e, up, _ in live.transitions])
    finally:
        await live.stop()
    assert source.health.all_up


async def test_exchange_down_is_reported_then_recovers(
    opened: tuple[CcxtSource, list[MarketSnapshot]], fake_exchanges: FakeExchanges
) -> None:
    source, _ = opened
    fake_exchanges.faults["okx"].down = True
    live = Live(source)
    live.start()
    try:
        await live.until(lambda: not source.health.up("okx"))
        assert "ExchangeNotAvailable" in live.transitions[-1][2]
        fake_exchanges.faults["okx"].down = False
        fake_exchanges.advance(1)
        await live.until(lambda: any(s.exchange == "okx" and s.closed for s in live.snaps))
    finally:
        await live.stop()
    assert [(e, up) for e, up, _ in live.transitions] == [("okx", False), ("okx", True)]


async def test_a_crossed_book_is_refetched_then_flagged_and_never_published(
    opened: tuple[CcxtSource, list[MarketSnapshot]], fake_exchanges: FakeExchanges
) -> None:
    source, _ = opened
    for e in EXCHANGES:
        fake_exchanges.faults[e].crossed = True
    fake_exchanges.requests.clear()
    fake_exchanges.advance(1)
    live = Live(source)
    live.start()
    try:
        await live.until(lambda: {s.exchange for s in live.snaps if not s.closed} == set(EXCHANGES))
    finally:
        await live.stop()
    assert all(s.depth is None for s in live.snaps)
    assert {s.quality for s in live.snaps if not s.closed} == {"crossed"}
    assert {s.quality for s in live.snaps if s.closed} == {"ok"}  # the candle itself is fine
    depth_calls = [
        r for r in fake_exchanges.requests if r.startswith("binance /fapi/v1/depth?symbol=BTCUSDT")
    ]
    polls = [r for r in fake_exchanges.requests if r.startswith("binance /fapi/v1/klines?") and "BTC" in r]
    assert len(depth_calls) >= 2 * len([p for p in polls if "endTime" not in p]) - 2  # one refetch per poll


async def test_a_gap_in_candles_is_flagged(
    opened: tuple[CcxtSource, list[MarketSnapshot]], fake_exchanges: FakeExchanges
) -> None:
    source, _ = opened
    fake_exchanges.faults["binance"].missing = {T0 + 251 * MINUTE}
    fake_exchanges.advance(3)  # 250, (251 missing), 252 close; 253 forms
    live = Live(source)
    live.start()
    try:
        await live.until(lambda: len([s for s in live.snaps if s.exchange == "binance" and s.closed]) >= 4)
    finally:
        await live.stop()
    btc = [s for s in live.snaps if s.exchange == "binance" and s.symbol == "BTC/USDT:USDT" and s.closed]
    assert [(_ms(s) - T0) // MINUTE for s in btc] == [250, 252]
    assert [s.quality for s in btc] == ["ok", "gap"]


async def test_candles_that_stop_make_the_data_stale_and_the_exchange_down(
    opened: tuple[CcxtSource, list[MarketSnapshot]], fake_exchanges: FakeExchanges
) -> None:
    source, _ = opened
    fake_exchanges.faults["binance"].frozen_at = T0 + 250 * MINUTE
    fake_exchanges.advance(5)
    live = Live(source)
    live.start()
    try:
        await live.until(lambda: not source.health.up("binance"))
    finally:
        await live.stop()
    reason = next(why for e, up, why in live.transitions if e == "binance" and not up)
    assert "no new candle" in reason
    assert source.health.up("okx") and source.health.up("bybit")


async def test_a_stale_book_is_flagged_and_left_out(
    opened: tuple[CcxtSource, list[MarketSnapshot]], fake_exchanges: FakeExchanges
) -> None:
    source, _ = opened
    source.feeds["bybit"].stale_after_ms = 5_000
    fake_exchanges.faults["bybit"].stale_book = True
    fake_exchanges.advance(1)
    live = Live(source)
    live.start()
    try:
        await live.until(lambda: any(s.exchange == "bybit" and not s.closed for s in live.snaps))
    finally:
        await live.stop()
    forming = [s for s in live.snaps if s.exchange == "bybit" and not s.closed]
    assert {s.quality for s in forming} == {"stale"} and all(s.depth is None for s in forming)
