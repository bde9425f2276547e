"""Helpers to run the scanner and the feature engineer as real agents on the fixture nats-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from apextrader.bus.history import history
from apextrader.bus.topology import stream_name
from apextrader.contracts import Envelope, TradingPipeline, parse_pipeline
from apextrader.contracts.names import EventType
from apextrader.local.nats_server import EmbeddedNats
from apextrader.runtime import Agent, AgentRunner, AgentSettings


def pipeline_with(base: TradingPipeline, *, source: dict[str, Any] | None = None,
                  agents: dict[str, Any] | None = None, **spec: Any) -> TradingPipeline:  # fmt: skip
    doc = base.model_dump(by_alias=True, exclude_none=True, mode="json")
    doc["spec"].update(spec)
    doc["spec"]["source"].update(source or {})
    for agent_id, cfg in (agents or {}).items():
        doc["spec"]["agents"].setdefault(agent_id, {}).update(cfg)
    return parse_pipeline(doc)


@contextlib.asynccontextmanager
async def running(
    cls: type[Agent], pipeline: TradingPipeline, server: EmbeddedNats, pipeline_file: Path
) -> AsyncIterator[AgentRunner]:
    settings = AgentSettings(
        agent=cls.agent_id,
        track="shared",
        pipeline_file=pipeline_file,
        nats_url=server.url,
        http_port=0,
        http_host="127.0.0.1",
        fetch_batch=256,
    )
    runner = AgentRunner(cls, settings, pipeline=pipeline, configure_logging=False)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(20):
            await runner.started.wait()
        yield runner
    finally:
        runner.request_stop()
        async with asyncio.timeout(20):
            code = await task
        assert code == 0, "the agent crashed"


async def count(runner: AgentRunner, pipeline: str, domain: str) -> int:
    assert runner.nc is not None
    info = await runner.nc.jetstream().stream_info(stream_name(pipeline, domain))  # type: ignore[arg-type]
    return int(info.state.messages)


async def read_all(runner: AgentRunner, pipeline: str, event_type: EventType) -> list[Envelope]:
    assert runner.nc is not None
    return [e async for e in history(runner.nc.jetstream(), pipeline, event_type, last=10**6)]


async def eventually(check: Any, within_s: float = 20.0) -> None:
    """Await `check()` (an async predicate) until true."""
    async with asyncio.timeout(within_s):
        while not await check():  # noqa: ASYNC110 - polling the server's state
            await asyncio.sleep(0.1)
