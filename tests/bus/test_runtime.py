"""The agent runtime against a real nats-server: consumers bound from the topology, handlers, HTTP
health/ready/metrics, JSON logs with the correlation id, spawn supervision, graceful stop."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from apextrader.bus.topology import stream_name, subject
from apextrader.cli.main import app
from apextrader.contracts import Envelope, Features, FeaturesComputed, FeaturesComputedEvent, TradingPipeline
from apextrader.contracts.names import EventType
from apextrader.local.nats_server import EmbeddedNats
from apextrader.runtime import Agent, AgentRunner, AgentSettings, Handler
from apextrader.runtime.logging import JsonFormatter
from tests.bus.helpers import publish_many, snapshot


class EchoFeatures(Agent):
    """Test agent: one features.computed per snapshot."""

    agent_id = "feature-engineer"
    started = False

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"market.snapshot": self.on_snapshot}

    async def start(self) -> None:
        self.started = True

    async def on_snapshot(self, ev: Envelope) -> list[Envelope]:
        self.ctx.log.info("snapshot", extra={"event_id": ev.id})
        data = FeaturesComputed(
            exchange="binance",
            symbol="BTC/USDT:USDT",
            timeframe="1m",
            bar=ev.data.bar,
            features=Features(),  # type: ignore[attr-defined]
        )
        return [ev.derive(FeaturesComputedEvent, data, source_agent="feature-engineer")]


def settings(server: EmbeddedNats, pipeline_file: Path, **kw: object) -> AgentSettings:
    return AgentSettings(
        agent="feature-engineer",
        track="shared",
        pipeline_file=pipeline_file,
        nats_url=server.url,
        http_port=0,
        http_host="127.0.0.1",
        **kw,  # type: ignore[arg-type]
    )


async def test_runner_serves_health_ready_metrics_and_handles_events(
    nats_server: EmbeddedNats, pipeline_file: Path, example_pipeline: TradingPipeline
) -> None:
    runner = AgentRunner(EchoFeatures, settings(nats_server, pipeline_file), configure_logging=False)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.started.wait(), 10)
    assert runner.agent is not None and runner.agent.started  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{runner.http_port}"
    assert runner.nc is not None
    js = runner.nc.jetstream()
    # A malformed event first: dead-lettered, the agent stays alive and ready and handles the rest.
    await js.publish(
        subject("btc-perp", "market.snapshot", "shared"), b"{not json", headers={"Nats-Msg-Id": "x1"}
    )
    await publish_many(js, [snapshot(i) for i in range(10)])
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/health") as r:
            assert r.status == 200
        async with http.get(base + "/ready") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        for _ in range(100):
            info = await js.stream_info(stream_name("btc-perp", "FEATURES"))
            if info.state.messages == 10:
                break
            await asyncio.sleep(0.05)
        assert info.state.messages == 10
        async with http.get(base + "/metrics") as r:
            text = await r.text()
        assert (
            'apex_events_total{agent="feature-engineer",outcome="acked",track="shared",type="market.snapshot"}'
            in text
        )
        assert "apex_handler_seconds_bucket" in text
        assert 'apex_dlq_total{agent="feature-engineer",reason="invalid"' in text
        async with http.get(base + "/health") as r:
            assert r.status == 200
    runner.request_stop()
    assert await asyncio.wait_for(task, 10) == 0


async def test_crashed_spawned_task_exits_non_zero(nats_server: EmbeddedNats, pipeline_file: Path) -> None:
    class Crashy(EchoFeatures):
        async def start(self) -> None:
            async def boom() -> None:
                await asyncio.sleep(0.05)
                raise RuntimeError("background loop died")

            self.ctx.spawn(boom())

    runner = AgentRunner(Crashy, settings(nats_server, pipeline_file), configure_logging=False)
    assert await asyncio.wait_for(runner.run(), 10) == 1


def test_json_log_lines_carry_the_correlation_id() -> None:
    from apextrader.bus.middleware import current_correlation_id

    fmt = JsonFormatter({"agent": "feature-engineer"})
    token = current_correlation_id.set("ab" * 16)
    try:
        rec = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        rec.event_id = "cd" * 16
        doc = json.loads(fmt.format(rec))
    finally:
        current_correlation_id.reset(token)
    assert doc["msg"] == "hello world" and doc["correlation_id"] == "ab" * 16
    assert doc["agent"] == "feature-engineer" and doc["event_id"] == "cd" * 16


def test_apex_agent_unknown_id_is_one_red_line() -> None:
    result = CliRunner().invoke(app, ["agent", "nope"])
    assert result.exit_code == 2
    assert "unknown agent 'nope'" in result.output and "Traceback" not in result.output


def test_apex_agent_not_yet_implemented_is_one_red_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from apextrader.cli import agents

    monkeypatch.setitem(
        agents.AGENT_CLASSES, "risk-manager", "apextrader.risk.no_such_module:RiskManagerAgent"
    )
    result = CliRunner().invoke(app, ["agent", "risk-manager", "--pipeline", "manifests/pipeline.yaml"])
    assert result.exit_code == 2
    assert "not implemented yet" in result.output and "Traceback" not in result.output


async def test_health_before_nats_is_reachable_then_ready(tmp_path: Path, pipeline_file: Path) -> None:
    server = EmbeddedNats(tmp_path / "late-nats")  # port chosen, not started yet
    runner = AgentRunner(EchoFeatures, settings(server, pipeline_file), configure_logging=False)
    task = asyncio.create_task(runner.run())
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                if runner.http_port:
                    break
                await asyncio.sleep(0.05)
            base = f"http://127.0.0.1:{runner.http_port}"
            async with http.get(base + "/health") as r:
                assert r.status == 200
            async with http.get(base + "/ready") as r:
                body = await r.json()
                assert r.status == 503 and body["checks"]["nats"] is False
            await asyncio.to_thread(server.start)
            await asyncio.wait_for(runner.started.wait(), 20)
            async with http.get(base + "/ready") as r:
                assert r.status == 200
        runner.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
    finally:
        server.stop()
