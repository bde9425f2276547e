"""The websocket transport: unmodified ccxt.pro clients against recorded Binance/Bybit frames served
locally (REST for markets, history, the Binance book snapshot and funding), with faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from apextrader.bus.metrics import SOURCE_UP
from apextrader.contracts import MarketAlert, TradingPipeline
from apextrader.contracts.payloads import Exchange, MarketSnapshot
from apextrader.local.nats_server import EmbeddedNats
from apextrader.market.agent import MarketScannerAgent
from apextrader.market.factory import build_source
from apextrader.market.sources.ccxt_client import Backoff
from apextrader.market.sources.rest_source import CcxtSource
from apextrader.market.sources.websocket_source import CcxtStreamSource
from apextrader.runtime import AgentContext, AgentRunner
from tests.market.agents_on_bus import count, eventually, pipeline_with, read_all, running
from tests.market.fake_exchanges import FIXTURES, MINUTE, T0, FakeExchanges
from tests.market.fake_streams import FakeStreams

EXCHANGES: list[Exchange] = ["binance", "bybit"]
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
TOPICS = 4 * len(SYMBOLS)  # candles, book, trades, liquidations per symbol


def _source(rest: FakeExchanges, streams: FakeStreams, **kw: object) -> CcxtStreamSource:
    args: dict[str, object] = {
        "exchanges": EXCHANGES,
        "symbols": SYMBOLS,
        "backfill_bars": 10,
        "hz": 20.0,
        "stale_after_s": 600.0,
        "client_factory": lambda e: rest.client(e, timeout_ms=1_000),
        "stream_client_factory": streams.client,
        "clock_ms": lambda: rest.now_ms,
        "backoff": Backoff(base=0.02, cap=0.1),
    }
    return CcxtStreamSource(**{**args, **kw})  # type: ignore[arg-type]


class Live:
    """Runs `source.live()` in the background, collecting snapshots and health transitions."""

    def __init__(self, source: CcxtStreamSource) -> None:
        self.source = source
        self.snaps: list[MarketSnapshot] = []
        self.transitions: list[tuple[Exchange, bool, str]] = []
        source.health.subscribe(lambda e, up, why: self.transitions.append((e, up, why)))
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.source.live():
            self.snaps += batch

    async def until(self, cond: Callable[[], bool], within_s: float = 8.0) -> None:
        async with asyncio.timeout(within_s):
            while not cond():  # noqa: ASYNC110 - the condition is data, not an event
                await asyncio.sleep(0.02)

    def closed(self, exchange: str, symbol: str = "BTC/USDT:USDT") -> list[MarketSnapshot]:
        return [s for s in self.snaps if s.exchange == exchange and s.symbol == symbol and s.closed]

    def forming(self, exchange: str, symbol: str = "BTC/USDT:USDT") -> list[MarketSnapshot]:
        return [s for s in self.snaps if s.exchange == exchange and s.symbol == symbol and not s.closed]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.source.close()


@pytest.fixture
async def live(fake_exchanges: FakeExchanges, fake_streams: FakeStreams) -> AsyncIterator[Live]:
    """Backfilled through 249 over REST (250 is forming), then streaming with every topic subscribed."""
    source = _source(fake_exchanges, fake_streams)
    await source.open()
    assert [s async for batch in source.backfill() for s in batch]
    running = Live(source)
    await running.until(lambda: all(fake_streams.subscribed(e, TOPICS) for e in EXCHANGES))
    yield running
    await running.stop()


def _bar(s: MarketSnapshot) -> int:
    return (int(s.bar.open_time.timestamp() * 1000) - T0) // MINUTE


def _recorded(exchange: str, symbol: str, bar: int) -> tuple[float, float]:
    """(close, volume) of the recorded REST candle."""
    base = symbol.split("/")[0]
    if exchange == "binance":
        rows = json.loads((FIXTURES / "binance" / f"klines_{base}USDT.json").read_text())
    else:
        rows = json.loads((FIXTURES / "bybit" / f"kline_{base}USDT.json").read_text())["result"]["list"]
    row = next(r for r in rows if int(r[0]) == T0 + bar * MINUTE)
    return float(row[4]), float(row[5])


def _taker_buys(exchange: str, symbol: str, bar: int) -> float:
    """Taker-buy volume of a bar, summed from the recorded trade frames (Binance `m`: buyer is maker)."""
    base = symbol.split("/")[0]
    lo, hi = T0 + bar * MINUTE, T0 + (bar + 1) * MINUTE
    if exchange == "binance":
        frames = json.loads((FIXTURES / "binance" / "ws" / f"{base.lower()}usdt@aggTrade.json").read_text())
        return sum(float(f["q"]) for f in frames if lo <= f["T"] < hi and not f["m"])
    frames = json.loads((FIXTURES / "bybit" / "ws" / f"publicTrade.{base}USDT.json").read_text())
    return sum(float(t["v"]) for f in frames for t in f["data"] if lo <= t["T"] < hi and t["S"] == "Buy")


async def test_streams_give_closed_bars_taker_flow_book_and_liquidations(
    live: Live, fake_streams: FakeStreams
) -> None:
    await fake_streams.advance(180)  # 250:30 -> 253:30: 253 opens, so 250, 251, 252 are closed
    await live.until(lambda: all(len(live.closed(e, s)) >= 3 for e in EXCHANGES for s in SYMBOLS))
    for e in EXCHANGES:
        for sym in SYMBOLS:
            closed = live.closed(e, sym)
            assert [_bar(s) for s in closed] == [250, 251, 252]  # each once, in order
            seqs = [s.seq for s in live.snaps if s.exchange == e and s.symbol == sym]
            assert seqs == list(range(11, 11 + len(seqs)))  # one sequence, after the 10 backfilled bars
            assert all(s.quality == "ok" and not s.backfill for s in closed)
            assert [(s.bar.close, s.bar.volume) for s in closed] == [
                _recorded(e, sym, b) for b in (250, 251, 252)
            ]
            # subscribed mid-bar 250: its taker flow is unknown; 251 and 252 are complete
            assert closed[0].bar.buy_volume is None
            for s in closed[1:]:
                assert s.bar.buy_volume == pytest.approx(_taker_buys(e, sym, _bar(s)), abs=1e-9)
                assert 0 < s.bar.buy_volume < s.bar.volume  # type: ignore[operator]
            assert closed[0].funding_rate is not None
            liqs = [(_bar(s), liq.side, liq.amount) for s in closed for liq in s.liquidations]
            # Binance sends the closing order's side; Bybit the liquidated position's (Buy = long)
            assert liqs == [(251, "sell", 0.5), (251, "buy", 0.12)]
            forming = live.forming(e, sym)[-1]
            assert _bar(forming) == 253 and forming.quality == "ok" and forming.depth is not None
            assert len(forming.depth.bids) == 10 and not forming.depth.crossed
    binance = json.loads((FIXTURES / "binance" / "depth_BTCUSDT.json").read_text())
    book = live.forming("binance")[-1].depth
    assert book is not None
    # the REST snapshot, then every recorded diff: the best bid was raised by 0.1 at each :03
    assert (book.bids[0].price, book.bids[0].amount) == (float(binance["bids"][0][0]), pytest.approx(1.047))
    assert live.transitions == []


async def test_a_dropped_connection_is_redialled_and_missed_bars_come_from_rest(
    live: Live, fake_streams: FakeStreams
) -> None:
    await fake_streams.advance(60)  # 251:30: 251 opened, so 250 is closed
    await live.until(lambda: all(len(live.closed(e)) == 1 for e in EXCHANGES))
    dials = dict(fake_streams.dials)
    fake_streams.refuse = True
    for e in EXCHANGES:
        await fake_streams.drop(e)
    await fake_streams.advance(120)  # 253:30: 251 and 252 closed while nobody listened
    fake_streams.refuse = False
    await live.until(lambda: all(fake_streams.subscribed(e, TOPICS) for e in EXCHANGES))
    await fake_streams.advance(60)  # 254:30: 254 opens on the stream, 253 is closed
    await live.until(lambda: all(len(live.closed(e, s)) >= 4 for e in EXCHANGES for s in SYMBOLS))
    for e in EXCHANGES:
        assert fake_streams.dials[e] > dials[e]
        for sym in SYMBOLS:
            closed = live.closed(e, sym)
            assert [_bar(s) for s in closed] == [250, 251, 252, 253]  # no hole, no repeat
            assert all(s.quality == "ok" for s in closed)
            assert [(s.bar.close, s.bar.volume) for s in closed] == [
                _recorded(e, sym, b) for b in range(250, 254)
            ]
            # trades of 251-253 were partly missed: no taker flow rather than a wrong one
            assert [s.bar.buy_volume for s in closed] == [None] * 4
    assert live.transitions == [] or live.transitions[-1][1]  # any outage it reported is over


async def test_a_crossed_book_is_never_published(live: Live, fake_streams: FakeStreams) -> None:
    await fake_streams.advance(60)  # 251 forming
    await live.until(lambda: all(live.forming(e) and live.forming(e)[-1].depth for e in EXCHANGES))
    topics = {"binance": "btcusdt@depth@100ms", "bybit": "orderbook.50.BTCUSDT"}
    for e, topic in topics.items():
        await fake_streams.inject(e, topic, "crossed")
    await live.until(lambda: all(live.forming(e)[-1].quality == "crossed" for e in EXCHANGES))
    mark = {e: len(live.forming(e)) for e in EXCHANGES}
    await asyncio.sleep(0.3)  # several ticks of a crossed book
    for e in EXCHANGES:
        crossed = live.forming(e)[mark[e] - 1 :]
        assert len(crossed) > 2 and all(s.quality == "crossed" and s.depth is None for s in crossed)
        other = live.forming(e, "ETH/USDT:USDT")[-1]
        assert other.quality == "ok" and other.depth is not None  # only that book is held back
    for e, topic in topics.items():
        await fake_streams.inject(e, topic, "uncrossed")
    await live.until(lambda: all(live.forming(e)[-1].quality == "ok" for e in EXCHANGES))
    for e in EXCHANGES:
        book = live.forming(e)[-1].depth
        assert book is not None and not book.crossed


async def test_a_silent_stream_goes_down_resubscribes_and_comes_back(
    fake_exchanges: FakeExchanges, fake_streams: FakeStreams
) -> None:
    source = _source(fake_exchanges, fake_streams, exchanges=["bybit"], stale_after_s=1.0)
    await source.open()
    live = Live(source)
    # the market runs at 20x: a book diff every 0.5 s of wall time, a candle update every 1.5 s
    clock = asyncio.create_task(fake_streams.advance(220, step_s=1.0))
    try:
        await live.until(lambda: fake_streams.subscribed("bybit", TOPICS))
        await live.until(lambda: len(live.closed("bybit")) >= 1)
        assert live.transitions == []  # data flowing: up all along
        fake_streams.silent = True  # connections stay open, nothing arrives
        dials = fake_streams.dials["bybit"]
        await live.until(lambda: not source.health.up("bybit"), within_s=5)
        assert "no data" in live.transitions[-1][2]
        await live.until(lambda: fake_streams.dials["bybit"] > dials, within_s=5)  # torn down, redialled
        before = len(live.closed("bybit"))
        fake_streams.silent = False
        await live.until(lambda: source.health.up("bybit"))
        await live.until(lambda: len(live.closed("bybit")) > before)  # bars flow again
    finally:
        clock.cancel()
        await live.stop()
    assert [(e, up) for e, up, _ in live.transitions] == [("bybit", False), ("bybit", True)]


async def test_the_scanner_alerts_and_turns_unready_while_a_stream_is_silent(
    nats_server: EmbeddedNats,
    example_pipeline: TradingPipeline,
    pipeline_file: Path,
    fake_exchanges: FakeExchanges,
    fake_streams: FakeStreams,
) -> None:
    """Bybit streams, OKX polls REST (not streamed here) in the same source; only Bybit goes quiet."""
    pipeline = pipeline_with(example_pipeline, source={"kind": "ccxt", "transport": "websocket"})
    exchanges: list[Exchange] = ["bybit", "okx"]

    class ScannerOnRecordedStreams(MarketScannerAgent):
        def __init__(self, ctx: AgentContext) -> None:
            source = _source(
                fake_exchanges, fake_streams, exchanges=exchanges, stale_after_s=1.0, backfill_bars=3
            )
            super().__init__(ctx, source=source)

    def gauge(e: str) -> float:
        return float(SOURCE_UP.labels(exchange=e)._value.get())

    name, clock = pipeline.name, None
    async with running(ScannerOnRecordedStreams, pipeline, nats_server, pipeline_file) as runner:
        await eventually(lambda: _true(fake_streams.subscribed("bybit", TOPICS)))
        clock = asyncio.create_task(fake_streams.advance(220, step_s=1.0))  # the market at 20x
        try:
            await eventually(lambda: _ready(runner, True))
            await eventually(
                lambda: _true(fake_exchanges.now_ms > T0 + 251 * MINUTE + 30_000)
            )  # bars streamed
            fake_streams.silent = True
            await eventually(lambda: _count(runner, name, "ALERTS", 1))
            assert (gauge("bybit"), gauge("okx")) == (0, 1)
            await eventually(lambda: _ready(runner, False))
            fake_streams.silent = False
            await eventually(lambda: _count(runner, name, "ALERTS", 2))
            assert gauge("bybit") == 1
            await eventually(lambda: _ready(runner, True))
        finally:
            clock.cancel()
        alerts = [e.data for e in await read_all(runner, name, "market.alert")]
        snaps = [e.data for e in await read_all(runner, name, "market.snapshot")]
    down, back = alerts
    assert isinstance(down, MarketAlert) and isinstance(back, MarketAlert)
    assert (down.kind, down.exchange, down.active, down.severity) == ("source_down", "bybit", True, "halt")
    assert (back.exchange, back.active) == ("bybit", False)
    assert {s.exchange for s in snaps if isinstance(s, MarketSnapshot) and not s.backfill} == {"bybit", "okx"}


async def _true(value: bool) -> bool:
    return value


async def _count(runner: AgentRunner, name: str, domain: str, n: int) -> bool:
    return await count(runner, name, domain) >= n


async def _ready(runner: AgentRunner, expected: bool) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{runner.http_port}/ready") as r:
        return (r.status == 200) is expected


def test_the_spec_picks_the_transport(example_pipeline: TradingPipeline) -> None:
    streamed = build_source(pipeline_with(example_pipeline, source={"kind": "ccxt"}).spec)
    polled = build_source(pipeline_with(example_pipeline, source={"kind": "ccxt", "transport": "rest"}).spec)
    assert isinstance(streamed, CcxtStreamSource)  # the default
    assert type(polled) is CcxtSource
