"""A malformed message from a venue is dropped with a counter and one log line, and never blocks
the bars after it (a liquidation of size 0 once kept every later closed bar of its symbol back)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from apextrader.bus import metrics
from apextrader.contracts.payloads import MarketSnapshot
from tests.market.fake_exchanges import MINUTE, T0, FakeExchanges
from tests.market.test_rest_source import Live, _ms, _source


def zero_size(body: dict[str, Any]) -> None:
    body["data"][0]["details"][0]["sz"] = "0"  # the newest liquidation: size 0


def dropped() -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "apex_input_dropped_total", {"exchange": "okx", "kind": "liquidation"}
        )
        or 0.0
    )


async def test_a_zero_size_liquidation_is_dropped_and_later_bars_flow(
    fake_exchanges: FakeExchanges, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    fake_exchanges.liquidation_edits.append(zero_size)
    before = dropped()
    source = _source(fake_exchanges, exchanges=["okx"])
    await source.open()
    _ = [s async for batch in source.backfill() for s in batch]
    live = Live(source)

    def closed_btc() -> list[MarketSnapshot]:
        return [s for s in live.snaps if s.symbol == "BTC/USDT:USDT" and s.closed]

    fake_exchanges.advance(1)
    live.start()
    try:
        await live.until(lambda: len(closed_btc()) >= 1)
        fake_exchanges.advance(1)
        await live.until(lambda: len(closed_btc()) >= 2)
    finally:
        await live.stop()
    assert [_ms(s) for s in closed_btc()] == [T0 + 250 * MINUTE, T0 + 251 * MINUTE]
    liqs = [(x.side, x.amount) for s in closed_btc() for x in s.liquidations]
    assert liqs == [("buy", 0.03), ("sell", 0.4)]  # the valid ones, once
    assert dropped() > before
    assert any("malformed message from the venue dropped" in r.getMessage() for r in caplog.records)
