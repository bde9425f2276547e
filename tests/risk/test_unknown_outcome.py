"""An order the execution agent has not settled keeps its exposure reserved on a live spec (its
outcome may be unknown at the venue: only a fill, a rejection or a cancellation releases it);
paper orders still expire so a lost paper order cannot block the track forever."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apextrader.contracts import SignalValidated, SignalValidatedEvent
from apextrader.risk import agent as risk_agent
from apextrader.risk.agent import RiskManagerAgent
from tests.fixtures.agents import offline_context, write_pipeline
from tests.risk.helpers import signal


def validated() -> SignalValidatedEvent:
    data = SignalValidated(signal=signal(), expectancy=0.1, expectancy_se=0.01, trades=20, confidence=0.9)
    return SignalValidatedEvent.new(data, pipeline="btc-perp", source_agent="backtester", track="stable")


@pytest.mark.parametrize(("mode", "kept"), [("live", True), ("paper", False)])
async def test_unsettled_live_orders_stay_reserved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, kept: bool
) -> None:
    monkeypatch.setattr(risk_agent, "PENDING_TTL_S", 0.0)
    pfile = write_pipeline(tmp_path, mode=mode, execution={"credentialsSecret": "exchange-keys"})
    agent = RiskManagerAgent(offline_context("risk-manager", pfile))
    coid = "a" * 32
    agent.book.add_pending(coid, ("binance", "ETH/USDT:USDT"), 1.0, False, time.monotonic() - 10)
    await agent.on_signal(validated())
    assert (coid in agent.book.pending) is kept
