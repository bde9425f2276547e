"""Must-hold behaviour of the risk manager and execution agents on a real nats-server: the chain keeps
the correlation id, forced redelivery yields exactly one order and one fill per signal, a halt stops
approvals from the next event on, the kill-switch trips after the configured drawdown, and the
canary weight is read from KV and echoed."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

from nats.aio.client import Client as NatsClient

from apextrader.bus import metrics
from apextrader.bus.kv import KV
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import KV_CANARY_WEIGHT, KV_HALT, kv_applied_key, kv_bucket
from apextrader.contracts import (
    Bar,
    Envelope,
    MarketAlert,
    MarketAlertEvent,
    MarketSnapshot,
    MarketSnapshotEvent,
    OrderApproved,
    OrderApprovedEvent,
    OrderBook,
    OrderFilledEvent,
    SignalRejectedEvent,
    SignalValidated,
    SignalValidatedEvent,
)
from apextrader.contracts.payloads import BookLevel
from apextrader.execution.agent import ExecutionAgent
from apextrader.local.nats_server import EmbeddedNats
from apextrader.risk.agent import RiskManagerAgent
from tests.fixtures.agents import eventually, read, running, write_pipeline
from tests.risk.helpers import signal

T0 = datetime(2026, 1, 5, tzinfo=UTC)
PIPE = "btc-perp"


def snapshot_event(symbol: str, price: float, i: int = 0, depth: float = 1_000.0) -> MarketSnapshotEvent:
    bar = Bar(open_time=T0 + timedelta(minutes=i), open=price, high=price, low=price, close=price, volume=1.0)
    book = OrderBook(
        bids=[BookLevel(price=price - 0.01, amount=depth)], asks=[BookLevel(price=price + 0.01, amount=depth)]
    )
    data = MarketSnapshot(exchange="binance", symbol=symbol, timeframe="1m", bar=bar, depth=book)
    return MarketSnapshotEvent.new(data, pipeline=PIPE, source_agent="market-scanner")


def validated(
    symbol: str, side: str = "long", price: float = 100.0, stop: float = 98.0
) -> SignalValidatedEvent:
    data = SignalValidated(
        signal=signal(side=side, price=price, stop=stop, symbol=symbol),  # type: ignore[arg-type]
        expectancy=0.1,
        expectancy_se=0.01,
        trades=20,
        confidence=0.9,
    )
    return SignalValidatedEvent.new(data, pipeline=PIPE, source_agent="backtester", track="stable")


class FlakyRisk(RiskManagerAgent):
    """Publishes its decision, then dies before the ack: every signal is delivered twice."""

    crashed: ClassVar[set[str]] = set()

    async def on_signal(self, ev: Envelope) -> list[Envelope]:  # type: ignore[override]
        out = list(await super().on_signal(ev))
        if ev.id not in self.crashed:
            self.crashed.add(ev.id)
            for e in out:
                await self.ctx.publish(e)
            raise RuntimeError("killed after publishing, before the ack")
        return out


class FlakyExecution(ExecutionAgent):
    crashed: ClassVar[set[str]] = set()

    async def on_order(self, ev: Envelope) -> list[Envelope]:  # type: ignore[override]
        out = list(await super().on_order(ev))
        if ev.id not in self.crashed:
            self.crashed.add(ev.id)
            for e in out:
                await self.ctx.publish(e)
            raise RuntimeError("killed after publishing, before the ack")
        return out


async def test_1000_signals_with_forced_redelivery_one_order_and_one_fill_each(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    n = 1000
    pfile = write_pipeline(
        tmp_path,
        risk={
            "riskPerTrade": 0.0001,
            "maxOpenPositions": 1000,
            "maxGrossExposure": 10,
            "maxNetExposure": 10,
            "maxLeverage": 10,
        },
    )
    symbols = [f"S{i:04d}/USDT:USDT" for i in range(n)]
    violations_before = metrics.MARGIN_VIOLATIONS.labels(track="stable")._value.get()
    async with (
        running(FlakyExecution, "execution", nats_server, pfile) as ex_run,
        running(FlakyRisk, "risk-manager", nats_server, pfile) as risk_run,
    ):
        assert ex_run.nc is not None
        js = ex_run.nc.jetstream()
        pub = Publisher(js)
        for s in symbols:
            await pub.publish(snapshot_event(s, 100.0))
        execution = ex_run.agent
        assert isinstance(execution, ExecutionAgent)
        await eventually(lambda: len(execution.venue.books) == n, what="order books for every symbol")
        signals = [validated(s) for s in symbols]
        for ev in signals:
            await pub.publish(ev)
        risk = risk_run.agent
        assert isinstance(risk, RiskManagerAgent)
        await eventually(lambda: len(risk.book.positions) == n, limit_s=90, what="a position per signal")
        approved = await read(js, PIPE, "order.approved", "stable")
        fills = await read(js, PIPE, "order.filled", "stable")
        rejected = await read(js, PIPE, "signal.rejected")
    assert len(FlakyRisk.crashed) == n and len(FlakyExecution.crashed) == n  # every one was redelivered
    coids = [e.data.client_order_id for e in approved if isinstance(e, OrderApprovedEvent)]
    assert len(coids) == n and len(set(coids)) == n
    assert all(e.id == e.data.client_order_id for e in approved if isinstance(e, OrderApprovedEvent))
    per_order = Counter(e.data.client_order_id for e in fills if isinstance(e, OrderFilledEvent))
    assert len(fills) == n and set(per_order.values()) == {1} and set(per_order) == set(coids)
    assert rejected == []
    # Positions were applied once per fill, not once per delivery: each equals its order's amount.
    amounts = {
        (e.data.exchange, e.data.symbol): e.data.amount for e in approved if isinstance(e, OrderApprovedEvent)
    }
    assert {inst: p.qty for inst, p in risk.book.positions.items()} == amounts
    # The correlation id survives the whole chain signal -> order.approved -> order.filled.
    corr = {ev.id: ev.correlation_id for ev in signals}
    by_coid = {e.data.client_order_id: e for e in approved if isinstance(e, OrderApprovedEvent)}
    for f in fills:
        assert isinstance(f, OrderFilledEvent)
        origin = by_coid[f.data.client_order_id]
        assert f.correlation_id == origin.correlation_id == corr[origin.causation_id]  # type: ignore[index]
        assert f.causation_id == origin.id
    assert metrics.MARGIN_VIOLATIONS.labels(track="stable")._value.get() == violations_before


async def test_halt_alert_and_kv_halt_stop_approvals_from_the_next_event(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    pfile = write_pipeline(tmp_path)
    async with running(RiskManagerAgent, "risk-manager", nats_server, pfile) as run:
        assert run.nc is not None
        js = run.nc.jetstream()
        pub = Publisher(js)
        risk = run.agent
        assert isinstance(risk, RiskManagerAgent)
        first = validated("ETH/USDT:USDT")
        await pub.publish(first)
        alert = MarketAlert(kind="liquidation_cascade", severity="halt", reason="z=7", exchange="binance")
        await pub.publish(MarketAlertEvent.new(alert, pipeline=PIPE, source_agent="event-watcher"))
        await eventually(
            lambda: risk.alerts.severity(("binance", "BTC/USDT:USDT")) == "halt", what="alert seen"
        )
        refused = validated("BTC/USDT:USDT")
        await pub.publish(refused)
        # KV halt, after the alert clears.
        await pub.publish(
            MarketAlertEvent.new(
                alert.model_copy(update={"active": False}), pipeline=PIPE, source_agent="event-watcher"
            )
        )
        await eventually(
            lambda: risk.alerts.severity(("binance", "BTC/USDT:USDT")) is None, what="alert cleared"
        )
        kv = await KV.open(js, kv_bucket(PIPE))
        await kv.put_json(KV_HALT, True)
        await eventually(lambda: risk.halted, what="halt applied")
        halted = validated("SOL/USDT:USDT", price=150.0, stop=147.0)
        await pub.publish(halted)
        await eventually(lambda: _count(js, "signal.rejected", 2), what="two refusals")
        approved = await read(js, PIPE, "order.approved")
        rejected = await read(js, PIPE, "signal.rejected")
        applied = await kv.get_json(kv_applied_key("risk-manager", "stable", "test-0"))
    assert [e.causation_id for e in approved] == [first.id]
    rules = {e.causation_id: e.data.rule for e in rejected if isinstance(e, SignalRejectedEvent)}
    assert rules == {refused.id: "halt_alert", halted.id: "halt"}
    assert applied["state"] == "halted" and applied["weight"] == 0 and applied["track_weight"] == 100


async def _count(js: object, event_type: str, n: int) -> bool:
    return len(await read(js, PIPE, event_type)) >= n  # type: ignore[arg-type]


async def test_kill_switch_after_the_configured_drawdown(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    pfile = write_pipeline(tmp_path, risk={"maxDrawdown": 0.02, "maxDailyLoss": 0.5, "maxPositionPct": 0.5})
    async with (
        running(ExecutionAgent, "execution", nats_server, pfile) as ex_run,
        running(RiskManagerAgent, "risk-manager", nats_server, pfile) as run,
    ):
        assert run.nc is not None
        js = run.nc.jetstream()
        pub = Publisher(js)
        risk = run.agent
        assert isinstance(risk, RiskManagerAgent)
        execution = ex_run.agent
        assert isinstance(execution, ExecutionAgent)
        await pub.publish(snapshot_event("ETH/USDT:USDT", 100.0, depth=10_000.0))
        await eventually(lambda: len(execution.venue.books) == 1, what="book")
        # Stop 0.1 away: the per-symbol cap binds, ~49.5k notional on 100k.
        await pub.publish(validated("ETH/USDT:USDT", stop=99.9))
        await eventually(lambda: ("binance", "ETH/USDT:USDT") in risk.book.positions, what="filled position")
        await pub.publish(
            snapshot_event("ETH/USDT:USDT", 95.0, i=1, depth=10_000.0)
        )  # -5 % on ~50 % of equity: -2.5 %
        await eventually(lambda: risk.book.drawdown(risk.track_capital) >= 0.02, what="drawdown past 2 %")
        after = validated("BTC/USDT:USDT", price=50_000.0, stop=49_000.0)
        await pub.publish(after)
        await eventually(lambda: _count(js, "signal.rejected", 1), what="refusal")
        rejected = await read(js, PIPE, "signal.rejected")
    assert isinstance(rejected[0], SignalRejectedEvent)
    assert rejected[0].causation_id == after.id and rejected[0].data.rule == "max_drawdown"
    assert risk.killed


async def test_canary_weight_is_read_from_kv_applied_and_echoed(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    pfile = write_pipeline(tmp_path, canary=True)
    async with running(RiskManagerAgent, "risk-manager", nats_server, pfile, track="canary") as run:
        assert run.nc is not None
        js = run.nc.jetstream()
        risk = run.agent
        assert isinstance(risk, RiskManagerAgent)
        kv = await KV.open(js, kv_bucket(PIPE))
        key = kv_applied_key("risk-manager", "canary", "test-0")
        assert risk.canary_weight == 5 and risk.track_capital == 5_000.0  # declared until KV says otherwise
        await kv.put_json(KV_CANARY_WEIGHT, 25)
        await eventually(lambda: risk.canary_weight == 25, what="weight applied")
        await eventually(lambda: _applied(kv, key, 25), what="weight echoed")
        assert metrics.CANARY_WEIGHT_APPLIED.labels(track="canary")._value.get() == 25
        assert risk.track_capital == 25_000.0
        await kv.put_json(KV_CANARY_WEIGHT, 0)  # aborted: the canary opens nothing
        await eventually(lambda: risk.track_weight == 0, what="abort applied")
        sig = SignalValidatedEvent.new(
            validated("ETH/USDT:USDT").data, pipeline=PIPE, source_agent="backtester", track="canary"
        )
        await Publisher(js).publish(sig)
        await eventually(lambda: _count(js, "signal.rejected", 1), what="refusal")
        rejected = await read(js, PIPE, "signal.rejected", "canary")
    assert isinstance(rejected[0], SignalRejectedEvent) and rejected[0].data.rule == "zero_weight"


async def _applied(kv: KV, key: str, weight: int) -> bool:
    value = await kv.get_json(key)
    return bool(value and value["weight"] == weight)


async def test_restart_after_a_crash_between_publish_and_ack_keeps_one_order_per_signal(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    n, crash_at = 120, 40
    pfile = write_pipeline(
        tmp_path, risk={"riskPerTrade": 0.0001, "maxOpenPositions": 1000, "maxGrossExposure": 10}
    )
    symbols = [f"R{i:03d}/USDT:USDT" for i in range(n)]
    signals = [validated(s) for s in symbols]
    handled: list[str] = []

    class DiesOnce(RiskManagerAgent):
        """Dies after publishing its decision for signal `crash_at`, before the ack; a dead process
        acks nothing more, so every later delivery fails too until it is stopped."""

        async def on_signal(self, ev: Envelope) -> list[Envelope]:  # type: ignore[override]
            if len(handled) >= crash_at:
                raise RuntimeError("dead")
            out = list(await super().on_signal(ev))
            handled.append(ev.id)
            if len(handled) == crash_at:
                for e in out:
                    await self.ctx.publish(e)
                raise RuntimeError("killed after publishing, before the ack")
            return out

    js = nc.jetstream()
    async with running(DiesOnce, "risk-manager", nats_server, pfile) as first:
        for ev in signals:
            await Publisher(js).publish(ev)
        await eventually(lambda: len(handled) >= crash_at, what="the crash")
        first.request_stop()
    async with running(RiskManagerAgent, "risk-manager", nats_server, pfile) as second:
        risk = second.agent
        assert isinstance(risk, RiskManagerAgent)
        assert len(risk.decisions) >= crash_at  # decisions rebuilt from the ORDERS stream
        assert len(risk.book.pending) >= crash_at  # and the exposure they reserved

        async def all_decided() -> bool:
            return (
                len(await read(js, PIPE, "order.approved")) + len(await read(js, PIPE, "signal.rejected"))
                >= n
            )

        await eventually(all_decided, what="every signal decided")
        approved = await read(js, PIPE, "order.approved")
        rejected = await read(js, PIPE, "signal.rejected")
    causes = Counter(e.causation_id for e in approved)
    assert rejected == [] and len(approved) == n and set(causes.values()) == {1}
    assert set(causes) == {ev.id for ev in signals}


async def test_execution_restart_never_fills_a_redelivered_order_twice(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    pfile = write_pipeline(tmp_path)
    js = nc.jetstream()
    filled_counter = metrics.ORDERS.labels(track="stable", state="filled")
    before = filled_counter._value.get()
    sig = validated("ETH/USDT:USDT")

    class DiesAfterPublishing(ExecutionAgent):
        async def on_order(self, ev: Envelope) -> list[Envelope]:  # type: ignore[override]
            for e in await super().on_order(ev):
                await self.ctx.publish(e)
            raise RuntimeError("killed after publishing, before the ack")

    async with running(DiesAfterPublishing, "execution", nats_server, pfile) as first:
        agent = first.agent
        assert isinstance(agent, ExecutionAgent)
        await Publisher(js).publish(snapshot_event("ETH/USDT:USDT", 100.0))
        await eventually(lambda: len(agent.venue.books) == 1, what="book")
        order = sig.derive(OrderApprovedEvent, _approval(sig), source_agent="risk-manager")
        await Publisher(js).publish(order)
        await eventually(lambda: order.data.client_order_id in agent.done, what="first fill")
    async with running(ExecutionAgent, "execution", nats_server, pfile) as second:
        again = second.agent
        assert isinstance(again, ExecutionAgent)
        assert again.reported[order.data.client_order_id].done
        # A different market now: a second fill would differ (and count twice in the metric).
        await Publisher(js).publish(snapshot_event("ETH/USDT:USDT", 120.0, i=1))
        await eventually(lambda: order.data.client_order_id in again.done, limit_s=20, what="redelivery")
        assert again.done[order.data.client_order_id] == []
    fills = await read(js, PIPE, "order.filled")
    assert len(fills) == 1 and filled_counter._value.get() == before + 1


def _approval(sig: SignalValidatedEvent) -> OrderApproved:
    from apextrader.contracts import derive_id

    coid = derive_id(sig.id, "order.approved", "stable", 0)
    return OrderApproved(
        client_order_id=coid,
        exchange="binance",
        symbol="ETH/USDT:USDT",
        side="buy",
        amount=2.0,
        mid_at_decision=100.0,
        notional=200.0,
        leverage=0.002,
        weight_applied=0,
    )


async def test_an_order_that_arrives_before_its_book_waits_for_it_instead_of_being_refused(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    """Right after a (re)start the market feed may lag the orders: the order is redelivered with
    back-off and filled once the book is there, never rejected for a book that is merely late."""
    pfile = write_pipeline(tmp_path)
    js = nc.jetstream()
    sig = validated("ETH/USDT:USDT")
    order = sig.derive(OrderApprovedEvent, _approval(sig), source_agent="risk-manager")
    async with running(ExecutionAgent, "execution", nats_server, pfile) as runner:
        agent = runner.agent
        assert isinstance(agent, ExecutionAgent)
        await Publisher(js).publish(order)
        await asyncio.sleep(0.8)  # at least one delivery found no book
        assert order.data.client_order_id not in agent.done
        await Publisher(js).publish(snapshot_event("ETH/USDT:USDT", 100.0))
        await eventually(lambda: order.data.client_order_id in agent.done, limit_s=20, what="fill")
    assert len(await read(js, PIPE, "order.filled")) == 1
    assert await read(js, PIPE, "order.rejected") == []
