"""Run the risk manager, execution and watcher agents in-process against the `nats_server` fixture."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from apextrader.bus.history import history
from apextrader.contracts import Envelope, load_pipeline, track_spec
from apextrader.contracts.names import AgentId, EventType, Track
from apextrader.local.nats_server import EmbeddedNats
from apextrader.runtime import Agent, AgentRunner, AgentSettings
from apextrader.runtime.context import AgentContext

ROOT = Path(__file__).resolve().parents[2]


def write_pipeline(tmp: Path, canary: bool = False, **spec: Any) -> Path:
    """`manifests/pipeline.yaml` with sections merged over it (dicts) or replaced (anything else),
    and no canary unless asked."""
    doc = yaml.safe_load((ROOT / "manifests" / "pipeline.yaml").read_text())
    if not canary:
        doc["spec"].pop("canary", None)
    for section, values in spec.items():
        if isinstance(values, dict):
            doc["spec"].setdefault(section, {}).update(values)
        else:
            doc["spec"][section] = values
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@asynccontextmanager
async def running(
    cls: type[Agent], agent: AgentId, server: EmbeddedNats, pipeline: Path, track: Track = "stable"
) -> AsyncIterator[AgentRunner]:
    settings = AgentSettings(
        agent=agent,
        track=track,
        pipeline_file=pipeline,
        nats_url=server.url,
        http_port=0,
        http_host="127.0.0.1",
        instance="test-0",
    )
    runner = AgentRunner(cls, settings, configure_logging=False)
    task = asyncio.create_task(runner.run())
    started = asyncio.create_task(runner.started.wait())
    await asyncio.wait({task, started}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # re-raise the start-up failure
    assert runner.started.is_set(), f"{agent} did not start"
    try:
        yield runner
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, 30)


async def read(
    server_js: Any, pipeline: str, event_type: EventType, track: Track | None = None
) -> list[Envelope]:
    return [ev async for ev in history(server_js, pipeline, event_type, last=100_000, track=track)]


async def eventually(predicate: Any, limit_s: float = 30.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def offline_context(agent: AgentId, pipeline: Path | None = None, track: Track = "stable") -> AgentContext:
    """A real context minus the bus, for handlers that neither publish nor touch KV."""
    loaded = load_pipeline(pipeline or ROOT / "manifests" / "pipeline.yaml")
    return AgentContext(
        pipeline=loaded,
        spec=track_spec(loaded.spec, track),
        track=track,
        instance="offline",
        settings=AgentSettings(agent=agent, track=track),
        log=logging.getLogger(f"offline.{agent}"),
        publisher=None,  # type: ignore[arg-type]
        kv=None,  # type: ignore[arg-type]
        _spawn=asyncio.ensure_future,
    )
