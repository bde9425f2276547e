"""The MarketScanner as a real agent on nats-server: backfill then live, ids, source-down alerts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from apextrader.bus.coalesce import COALESCE, coalesce_key
from apextrader.bus.metrics import SOURCE_UP
from apextrader.bus.topology import stream_name
from apextrader.contracts import MarketAlert, MarketSnapshot, TradingPipeline, decode_event
from apextrader.local.collect import iter_messages
from apextrader.local.nats_server import EmbeddedNats
from apextrader.market.agent import MarketScannerAgent, snapshot_id
from apextrader.market.sources.ccxt_client import Backoff
from apextrader.market.sources.rest_source import CcxtSource
from apextrader.runtime import AgentContext, AgentRunner
from tests.market.agents_on_bus import count, eventually, pipeline_with, read_all, running
from tests.market.fake_exchanges import FakeExchanges


@pytest.fixture
def fast_synthetic(example_pipeline: TradingPipeline) -> TradingPipeline:
    # 100 bars a second at 10 ticks a second: a few seconds cover hundreds of bars
    return pipeline_with(example_pipeline, source={"backfillBars": 30, "speed": 6000, "snapshotHz": 10})


async def test_scanner_backfills_then_publishes_live_bars(
    nats_server: EmbeddedNats, pipeline_file: Path, fast_synthetic: TradingPipeline
) -> None:
    name = fast_synthetic.name
    async with running(MarketScannerAgent, fast_synthetic, nats_server, pipeline_file) as runner:
        await eventually(lambda: _enough(runner, name, 30 * 6 + 60))
        events = await read_all(runner, name, "market.snapshot")
        marks = await _coalesce_headers(runner, name)
    _assert_forming_bars_only_are_coalescible(marks)
    snaps = [e.data for e in events]
    assert all(isinstance(s, MarketSnapshot) for s in snaps)
    backfill = snaps[:180]
    assert all(s.backfill and s.closed for s in backfill)  # type: ignore[union-attr]
    live = snaps[180:]
    assert live and not any(s.backfill for s in live)  # type: ignore[union-attr]
    series = {(s.exchange, s.symbol) for s in backfill}  # type: ignore[union-attr]
    assert len(series) == 6
    for key in series:
        closed = [s for s in snaps if (s.exchange, s.symbol) == key and s.closed]  # type: ignore[union-attr]
        times = [s.bar.open_time for s in closed]  # type: ignore[union-attr]
        assert times == sorted(set(times))  # no repeats, no reordering
    closed_events = [e for e in events if e.data.closed]  # type: ignore[attr-defined]
    assert all(e.id == snapshot_id(name, e.data) for e in closed_events)  # type: ignore[arg-type]
    assert all(e.correlation_id == e.id for e in events)  # each snapshot starts a chain


async def _coalesce_headers(runner: AgentRunner, name: str) -> list[tuple[bool, str | None, str]]:
    """(closed, `Apex-Coalesce` header, expected key) of every stored snapshot."""
    assert runner.nc is not None
    out = []
    async for msg in iter_messages(runner.nc.jetstream(), stream_name(name, "MARKET"), ">"):
        ev = decode_event(msg.data)
        d = ev.data
        assert isinstance(d, MarketSnapshot)
        out.append(
            (d.closed, (msg.headers or {}).get(COALESCE), coalesce_key(d.exchange, d.symbol, d.timeframe))
        )
    return out


def _assert_forming_bars_only_are_coalescible(marks: list[tuple[bool, str | None, str]]) -> None:
    forming = [(header, key) for closed, header, key in marks if not closed]
    assert forming, "the source published no forming bar"
    assert all(header == key for header, key in forming)
    assert all(header is None for closed, header, _ in marks if closed)


async def _enough(runner: object, name: str, n: int) -> bool:
    return await count(runner, name, "MARKET") >= n  # type: ignore[arg-type]


async def test_source_down_alerts_sets_metric_and_readiness(
    nats_server: EmbeddedNats,
    pipeline_file: Path,
    example_pipeline: TradingPipeline,
    fake_exchanges: FakeExchanges,
) -> None:
    pipeline = pipeline_with(example_pipeline, source={"kind": "ccxt", "backfillBars": 5, "snapshotHz": 20})

    class ScannerOnRecordedExchanges(MarketScannerAgent):
        def __init__(self, ctx: AgentContext) -> None:
            source = CcxtSource(
                exchanges=["binance", "bybit", "okx"],
                symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"],
                backfill_bars=5,
                hz=20.0,
                stale_after_s=600.0,
                client_factory=lambda e: fake_exchanges.client(e, timeout_ms=1_000),
                clock_ms=lambda: fake_exchanges.now_ms,
                backoff=Backoff(base=0.01, cap=0.05),
            )
            super().__init__(ctx, source=source)

    name = pipeline.name
    async with running(ScannerOnRecordedExchanges, pipeline, nats_server, pipeline_file) as runner:
        await eventually(lambda: _enough(runner, name, 5 * 6))
        await eventually(_ready(runner, True))
        assert SOURCE_UP.labels(exchange="okx")._value.get() == 1
        fake_exchanges.faults["okx"].down = True
        await eventually(lambda: _alerts(runner, name, 1))
        assert SOURCE_UP.labels(exchange="okx")._value.get() == 0
        assert SOURCE_UP.labels(exchange="binance")._value.get() == 1
        await eventually(_ready(runner, False))
        fake_exchanges.faults["okx"].down = False
        await eventually(lambda: _alerts(runner, name, 2))
        await eventually(_ready(runner, True))
        alerts = [e.data for e in await read_all(runner, name, "market.alert")]
    assert all(isinstance(a, MarketAlert) for a in alerts)
    down, back = alerts
    assert (down.kind, down.exchange, down.active, down.severity) == ("source_down", "okx", True, "halt")  # type: ignore[union-attr]
    assert "ExchangeNotAvailable" in down.reason  # type: ignore[union-attr]
    assert (back.exchange, back.active) == ("okx", False)  # type: ignore[union-attr]


async def _alerts(runner: object, name: str, n: int) -> bool:
    return await count(runner, name, "ALERTS") >= n  # type: ignore[arg-type]


def _ready(runner: object, expected: bool) -> object:
    async def check() -> bool:
        url = f"http://127.0.0.1:{runner.http_port}/ready"  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            return (r.status == 200) is expected

    return check


@pytest.fixture(autouse=True)
def _reset_source_gauges() -> Iterator[None]:
    yield
    for e in ("binance", "bybit", "okx"):
        SOURCE_UP.labels(exchange=e).set(0)
