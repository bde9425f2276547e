"""The ExecutionAgent in live mode on a real nats-server, ordering through the unmodified ccxt
binanceusdm against the local Binance server: events for fills and rejections, cancel on graceful
stop, and no secret anywhere in the events, the logs or /metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from apextrader.bus.metrics import REGISTRY
from apextrader.bus.publisher import Publisher
from apextrader.contracts import OrderApproved, OrderApprovedEvent, SignalValidated, SignalValidatedEvent
from apextrader.execution.agent import ExecutionAgent
from apextrader.execution.guard import Credentials, LiveModeRefused
from apextrader.local.nats_server import EmbeddedNats
from apextrader.venues.ccxt_venue import build_exchange
from tests.fixtures.agents import eventually, read, running, write_pipeline
from tests.risk.helpers import signal

from .conftest import Served

KEY, SECRET = "agent-key-5e7d3c9a1f", "agent-secret-8b2f4d6e0c"
PIPE = "btc-perp"


def approved_event(amount: float, order_type: str = "market") -> OrderApprovedEvent:
    sig = SignalValidatedEvent.new(
        SignalValidated(
            signal=signal(symbol="BTC/USDT:USDT", price=50_000, stop=49_000),
            expectancy=0.1,
            expectancy_se=0.01,
            trades=10,
            confidence=0.9,
        ),
        pipeline=PIPE,
        source_agent="backtester",
        track="stable",
    )
    order = OrderApproved.model_validate(
        {
            "client_order_id": "0" * 32,
            "exchange": "binance",
            "symbol": "BTC/USDT:USDT",
            "side": "buy",
            "amount": amount,
            "order_type": order_type,
            "limit_price": 49_000.0 if order_type == "limit" else None,
            "mid_at_decision": 50_000.0,
            "notional": amount * 50_000,
            "leverage": 0.1,
            "weight_applied": 100,
        }
    )
    ev = sig.derive(OrderApprovedEvent, order, source_agent="risk-manager")
    return ev.model_copy(update={"data": order.model_copy(update={"client_order_id": ev.id})})


@pytest.fixture
def live_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRY_RUN", "false")
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", SECRET)


def live_pipeline(tmp: Path) -> Path:
    return write_pipeline(
        tmp, mode="live", exchanges=["binance"], execution={"credentialsSecret": "exchange-keys"}
    )


async def test_live_agent_orders_cancels_on_stop_and_never_leaks_secrets(
    nats_server: EmbeddedNats,
    tmp_path: Path,
    fake_binance: Served,
    live_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    served = fake_binance

    class LocalLive(ExecutionAgent):
        def make_exchange(self, exchange: str, creds: Credentials):  # type: ignore[no-untyped-def]
            return build_exchange(exchange, creds, session=served.session())

    served.fake.script.extend(["ok", "insufficient", "open"])
    pfile = live_pipeline(tmp_path)
    async with running(LocalLive, "execution", nats_server, pfile) as run:
        # Approved after the agent started (an older approval waits the lookup grace period).
        filled, poor, resting = approved_event(0.01), approved_event(0.02), approved_event(0.03, "limit")
        assert run.nc is not None
        js = run.nc.jetstream()
        agent = run.agent
        assert isinstance(agent, ExecutionAgent) and agent.live is not None
        for ev in (filled, poor, resting):
            await Publisher(js).publish(ev)
        await eventually(lambda: resting.data.client_order_id in agent.open, what="resting order tracked")
    # Graceful stop cancelled the resting order at the exchange and said so on the bus.
    assert served.fake.orders[resting.data.client_order_id]["status"] == "CANCELED"
    from apextrader.bus.client import connect

    nc = await connect(nats_server.url, name="check")
    try:
        js = nc.jetstream()
        events = [
            e
            for t in ("order.submitted", "order.filled", "order.rejected", "order.cancelled")
            for e in await read(js, PIPE, t)
        ]  # type: ignore[arg-type]
    finally:
        await nc.close()
    by_type = {(e.type, e.data.client_order_id) for e in events}  # type: ignore[attr-defined]
    assert ("order.filled", filled.id) in by_type and ("order.submitted", filled.id) in by_type
    assert ("order.rejected", poor.id) in by_type
    assert ("order.cancelled", resting.id) in by_type
    rejection = next(e for e in events if e.type == "order.rejected")
    assert rejection.data.reason == "insufficient_funds"  # type: ignore[attr-defined]
    fill = next(e for e in events if e.type == "order.filled")
    assert fill.data.paper is False and fill.data.exchange_order_id  # type: ignore[attr-defined]
    text = "".join(e.to_json().decode() for e in events) + generate_latest(REGISTRY).decode() + caplog.text
    assert KEY not in text and SECRET not in text
    assert served.fake.submits == 2  # the insufficient-funds order never reached the book


async def test_live_mode_without_credentials_refuses_to_start(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRY_RUN", "false")
    for var in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "EXCHANGE_API_KEY", "EXCHANGE_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(LiveModeRefused, match="BINANCE_API_KEY"):
        async with running(ExecutionAgent, "execution", nats_server, live_pipeline(tmp_path)):
            pass
