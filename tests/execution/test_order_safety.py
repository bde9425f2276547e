"""Money safety of the execution agent on a real nats-server, ordering through the unmodified ccxt
binanceusdm against the local Binance server: an unknown outcome is never a rejection (the event
is redelivered and looked up, one create_order only), a working limit order survives a crash and
a restart, and a stale approval (a DLQ replay) is refused with its reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from apextrader.bus import dlq
from apextrader.bus.client import connect
from apextrader.bus.publisher import Publisher
from apextrader.contracts.names import EventType
from apextrader.execution.agent import ExecutionAgent
from apextrader.execution.guard import Credentials
from apextrader.local.nats_server import EmbeddedNats
from apextrader.venues.ccxt_venue import build_exchange
from tests.fixtures.agents import eventually, read, running, write_pipeline
from tests.risk.test_risk_execution_bus import snapshot_event

from .conftest import Served
from .test_live_agent import KEY, PIPE, SECRET, approved_event, live_pipeline

TYPES: tuple[EventType, ...] = ("order.submitted", "order.filled", "order.rejected", "order.cancelled")


@pytest.fixture
def live_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRY_RUN", "false")
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", SECRET)


def agent_for(served: Served, timeout_ms: int = 10_000) -> type[ExecutionAgent]:
    class LocalLive(ExecutionAgent):
        def make_exchange(self, exchange: str, creds: Credentials):  # type: ignore[no-untyped-def]
            return build_exchange(exchange, creds, timeout_ms=timeout_ms, session=served.session())

    return LocalLive


async def order_events(server: EmbeddedNats) -> list[tuple[str, str]]:
    nc = await connect(server.url, name="check")
    try:
        js = nc.jetstream()
        return [(e.type, e.data.client_order_id) for t in TYPES for e in await read(js, PIPE, t)]  # type: ignore[attr-defined]
    finally:
        await nc.close()


async def dlq_holds(js: JetStreamContext, event_id: str) -> bool:
    for stream in await dlq.dlq_streams(js, PIPE):
        async for entry in dlq.iter_entries(js, stream):
            if entry.event_id == event_id:
                return True
    return False


async def test_timeout_after_accept_with_lagging_lookup_is_redelivered_never_rejected(
    nats_server: EmbeddedNats, tmp_path: Path, fake_binance: Served, live_env: None
) -> None:
    fake = fake_binance.fake
    fake.script.append("accept_then_hang")
    fake.hang_s, fake.lookup_lag_s = 1.0, 1.5  # accepted, answered too late, invisible for 1.5 s
    pfile = live_pipeline(tmp_path)
    async with running(agent_for(fake_binance, timeout_ms=300), "execution", nats_server, pfile) as run:
        assert run.nc is not None
        ev = approved_event(0.01)
        await Publisher(run.nc.jetstream()).publish(ev)
        agent = run.agent
        assert isinstance(agent, ExecutionAgent)
        await eventually(
            lambda: any(e.type == "order.filled" for e in agent.done.get(ev.id, [])),
            what="the fill found by lookup",
        )
    events = await order_events(nats_server)
    assert ("order.filled", ev.id) in events
    assert not [e for e in events if e[0] == "order.rejected"]  # the exposure was never released
    assert len([r for r in fake.requests if r[0] == "POST"]) == 1  # one create_order, ever


async def test_crash_with_an_open_limit_order_then_restart_reports_its_fill(
    nats_server: EmbeddedNats, tmp_path: Path, fake_binance: Served, live_env: None
) -> None:
    fake = fake_binance.fake
    fake.script.append("open")
    pfile = write_pipeline(
        tmp_path,
        mode="live",
        exchanges=["binance"],
        execution={"credentialsSecret": "exchange-keys", "cancelOnStop": False},
    )
    cls = agent_for(fake_binance)
    async with running(cls, "execution", nats_server, pfile) as run:
        assert run.nc is not None
        resting = approved_event(0.03, "limit")
        await Publisher(run.nc.jetstream()).publish(resting)
        first = run.agent
        assert isinstance(first, ExecutionAgent)
        await eventually(lambda: resting.id in first.open, what="resting order tracked")
    # The agent is gone (no cancel on stop, as after a crash); meanwhile the venue fills the order.
    order = fake.orders[resting.id]
    order.update(status="FILLED", executedQty=order["origQty"], avgPrice="49000.00")
    async with running(cls, "execution", nats_server, pfile) as run:
        agent = run.agent
        assert isinstance(agent, ExecutionAgent) and resting.id in agent.open  # rebuilt at start
        await eventually(lambda: resting.id not in agent.open, what="the fill polled after restart")
    events = await order_events(nats_server)
    assert ("order.filled", resting.id) in events
    assert len([r for r in fake.requests if r[0] == "POST"]) == 1


async def test_an_approval_the_market_has_left_behind_is_refused_as_expired(
    nats_server: EmbeddedNats, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pfile = write_pipeline(tmp_path, exchanges=["binance"], timeframe="1m", risk={"signalExpiryBars": 2})
    async with running(ExecutionAgent, "execution", nats_server, pfile) as run:
        assert run.nc is not None
        pub = Publisher(run.nc.jetstream())
        agent = run.agent
        assert isinstance(agent, ExecutionAgent)
        await pub.publish(snapshot_event("BTC/USDT:USDT", 50_000.0, i=20))
        await eventually(lambda: agent.market, what="bar 20")
        replayed = approved_event(0.01)  # approved while the market was at bar 20 ...
        later = [snapshot_event("BTC/USDT:USDT", 50_000.0, i=i) for i in range(21, 31)]
        for snap in later:
            await pub.publish(snap)
        await eventually(
            lambda: agent.marks.get(("binance", "BTC/USDT:USDT"), (None,))[0] == later[-1].data.bar.open_time,
            what="bar 30",
        )
        fresh = approved_event(0.01)  # ... and one approved at bar 30
        await pub.publish(replayed)  # ... delivered only now, ten bars later (a DLQ replay)
        await pub.publish(fresh)
        await eventually(lambda: fresh.id in agent.done and replayed.id in agent.done, what="both decided")
        assert [e.type for e in agent.done[fresh.id]] == ["order.filled"]
        (rejection,) = agent.done[replayed.id]
        assert rejection.type == "order.rejected"
        assert (
            rejection.data.reason == "expired"
            and "moved 10 bars since its approval" in rejection.data.message
        )  # type: ignore[attr-defined]


async def test_an_order_dead_lettered_with_an_unknown_outcome_is_looked_up_after_a_restart(
    nats_server: EmbeddedNats, tmp_path: Path, fake_binance: Served, live_env: None
) -> None:
    """The venue fills the order but answers too late and hides it from lookups: every delivery ends
    unknown and the approval goes to the DLQ (never `order.rejected`). A restarted agent, which has
    no memory of it, finds it from the stream's record and reports the fill."""
    fake = fake_binance.fake
    fake.script.append("accept_then_hang")
    fake.hang_s, fake.lookup_lag_s = 1.0, 3600.0
    pfile = write_pipeline(
        tmp_path,
        mode="live",
        exchanges=["binance"],
        execution={"credentialsSecret": "exchange-keys"},
        bus={"maxDeliver": 2},
    )
    cls = agent_for(fake_binance, timeout_ms=300)
    async with running(cls, "execution", nats_server, pfile) as run:
        assert run.nc is not None
        ev = approved_event(0.01)
        await Publisher(run.nc.jetstream()).publish(ev)
        js = run.nc.jetstream()
        await eventually(
            lambda: dlq_holds(js, ev.id), what="the approval dead-lettered with its outcome unknown"
        )
    assert await order_events(nats_server) == []  # nothing settled, nothing rejected
    fake._visible_at.clear()  # the venue's read side has caught up while the agent was away
    async with running(cls, "execution", nats_server, pfile) as run:
        agent = run.agent
        assert isinstance(agent, ExecutionAgent) and ev.id in agent.unknown  # rebuilt at start
        await eventually(lambda: ev.id not in agent.unknown, what="the fill looked up after restart")
    events = await order_events(nats_server)
    assert ("order.filled", ev.id) in events
    assert not [e for e in events if e[0] == "order.rejected"]
    assert len([r for r in fake.requests if r[0] == "POST"]) == 1  # one create_order, ever
