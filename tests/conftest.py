"""Shared fixtures (owned by the bus engineer): a real `nats-server -js` per test, and helpers to put a
pipeline's topology on it. Engineers put their own fixtures in `tests/<their dir>/conftest.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.topology import Topology, declare
from apextrader.contracts import TradingPipeline, load_pipeline
from apextrader.local.nats_server import EmbeddedNats

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PIPELINE = ROOT / "manifests" / "pipeline.yaml"
#: Shared fixtures: the real cluster (`cluster`: the local control plane or kind) for the journey
#: and tests/bench, the external tools, and the quant agents' runner.
pytest_plugins = ["tests.fixtures.cluster", "tests.fixtures.tools", "tests.fixtures.quant_agents"]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream on a free port, file store under tmp_path.

    `.url`, `.restart()` (same port, same store), `.stop()`; stopped and removed after the test."""
    server = EmbeddedNats(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def example_pipeline() -> TradingPipeline:
    """`manifests/pipeline.yaml` as loaded."""
    return load_pipeline(EXAMPLE_PIPELINE)


@pytest.fixture
def pipeline_file() -> Path:
    return EXAMPLE_PIPELINE


@pytest.fixture
def topology(example_pipeline: TradingPipeline) -> Topology:
    """The example pipeline's streams, consumers and KV bucket (not yet created)."""
    return declare(example_pipeline.spec, example_pipeline.name)


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NatsClient]:
    """A connected client to the fixture server (closed after the test)."""
    client = await connect(nats_server.url, name="pytest")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def bus(nc: NatsClient, topology: Topology) -> Topology:
    """The example pipeline's topology created on the fixture server; returns the declarations."""
    await ensure_topology(nc.jetstream(), topology)
    return topology


__all__ = ["EXAMPLE_PIPELINE", "nats"]
