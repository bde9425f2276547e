"""Must hold: kill -9 a consuming process mid-stream and restart it; restart nats-server mid-stream.
Nothing is lost; the idempotency guarantee (see `bus.middleware`) holds: every derived event reaches
the downstream stream exactly once, and an already completed event is never handled again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from nats.aio.client import Client as NatsClient

from apextrader.bus import metrics
from apextrader.bus.client import ensure_topology
from apextrader.bus.publisher import MSG_ID, Publisher, event_headers
from apextrader.bus.topology import Topology, declare, stream_name, subject
from apextrader.contracts import (
    Envelope,
    Features,
    FeaturesComputed,
    FeaturesComputedEvent,
    MarketSnapshotEvent,
    load_pipeline,
)
from apextrader.local.nats_server import EmbeddedNats
from tests.bus.helpers import (
    RunningConsumer,
    chain_config,
    consumer_decl,
    fast_topology,
    publish_many,
    snapshot,
    wait_settled,
    wait_until,
)
from tests.conftest import EXAMPLE_PIPELINE, ROOT

BATCH = 16


def quick_pipeline(tmp_path: Path) -> Path:
    """The example pipeline with a 2 s ack wait, so a killed consumer's in-flight events come back fast."""
    doc = yaml.safe_load(EXAMPLE_PIPELINE.read_text())
    doc["spec"]["bus"]["ackWait"] = "2s"
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def start_agent(server: EmbeddedNats, pipeline: Path, journal: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "agents"), str(ROOT / "operator"), str(ROOT)]),
        "APEX_NATS_URL": server.url,
        "APEX_PIPELINE_FILE": str(pipeline),
        "APEX_HTTP_PORT": "0",
        "APEX_FETCH_BATCH": str(BATCH),
        "APEX_TEST_JOURNAL": str(journal),
        "APEX_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "tests.bus.crash_agent"], env=env, cwd=ROOT)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_kill_9_consumer_mid_stream_loses_nothing_and_outputs_once(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    n = 2000
    pipeline_file = quick_pipeline(tmp_path)
    pipeline = load_pipeline(pipeline_file)
    topo = declare(pipeline.spec, pipeline.name)
    js = nc.jetstream()
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    events = [snapshot(i) for i in range(n)]
    await publish_many(js, events)
    journal = tmp_path / "journal.txt"

    proc = start_agent(nats_server, pipeline_file, journal)
    try:
        for _ in range(600):
            if len(lines(journal)) >= n // 3:
                break
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        handled_before = len(lines(journal))
        assert 0 < handled_before < n, "the kill must land mid-stream"

        proc = start_agent(nats_server, pipeline_file, journal)
        await wait_settled(js, decl, limit_s=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0  # graceful stop
    finally:
        if proc.poll() is None:
            proc.kill()

    handled = Counter(lines(journal))
    assert set(handled) == {e.id for e in events}  # nothing lost
    twice = [i for i, c in handled.items() if c > 1]
    # Only events in flight at the kill (fetched, not yet acked) can run again: at most one batch.
    assert len(twice) <= BATCH
    # Their outputs carried the same deterministic ids: the downstream stream has each exactly once.
    feats = await js.stream_info(stream_name("btc-perp", "FEATURES"))
    assert feats.state.messages == n
    sub = await js.pull_subscribe(
        subject("btc-perp", "features.computed", "shared"), stream=feats.config.name
    )
    causes: Counter[str] = Counter()
    while sum(causes.values()) < n:
        for msg in await sub.fetch(500, timeout=2):
            causes[FeaturesComputedEvent.model_validate_json(msg.data).causation_id or ""] += 1
            await msg.ack()
    assert causes == Counter({e.id: 1 for e in events})


async def test_idempotency_skips_an_event_completed_before(nc: NatsClient, topology: Topology) -> None:
    """The same event id after the de-dup window (simulated by a new Nats-Msg-Id): acked, not handled."""
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    calls: Counter[str] = Counter()

    async def handle(ev: Envelope) -> None:
        calls[ev.id] += 1

    ev = snapshot(1)
    cfg = chain_config(js, topo, decl, {"market.snapshot": handle})
    dup = metrics.EVENTS.labels("feature-engineer", "shared", "market.snapshot", "duplicate")
    before = dup._value.get()
    async with RunningConsumer(js, decl, cfg):
        await Publisher(js).publish(ev)
        await wait_settled(js, decl)
        headers = {**event_headers(ev), MSG_ID: ev.id + ".again"}
        ack = await js.publish(
            subject("btc-perp", "market.snapshot", "shared"), ev.to_json(), headers=headers
        )
        assert not ack.duplicate  # it really reached the stream a second time
        await wait_settled(js, decl)
    assert calls == Counter({ev.id: 1})
    assert dup._value.get() == before + 1


async def test_nats_server_restart_mid_stream_loses_nothing(
    nats_server: EmbeddedNats, nc: NatsClient, topology: Topology
) -> None:
    n = 3000
    js = nc.jetstream()
    topo = fast_topology(topology)
    await ensure_topology(js, topo)
    decl = consumer_decl(topo, "feature-engineer")
    handled: Counter[str] = Counter()

    async def handle(ev: Envelope) -> list[Envelope]:
        assert isinstance(ev, MarketSnapshotEvent)
        handled[ev.id] += 1
        data = FeaturesComputed(
            exchange="binance", symbol=ev.data.symbol, timeframe="1m", bar=ev.data.bar, features=Features()
        )
        return [ev.derive(FeaturesComputedEvent, data, source_agent="feature-engineer")]

    events = [snapshot(i) for i in range(n)]
    publisher = Publisher(js, ack_timeout=0.5)

    async def produce() -> None:
        for ev in events:  # one at a time, retrying through the restart with the same Nats-Msg-Id
            await publisher.publish(ev)

    cfg = chain_config(js, topo, decl, {"market.snapshot": handle}, publisher=publisher)
    async with RunningConsumer(js, decl, cfg):
        producing = asyncio.create_task(produce())
        await wait_until(lambda: len(handled) >= n // 3)
        await asyncio.to_thread(nats_server.restart)
        await asyncio.wait_for(producing, 60)
        await wait_settled(js, decl, limit_s=60)
    assert set(handled) == {e.id for e in events}
    market = await js.stream_info(stream_name("btc-perp", "MARKET"))
    feats = await js.stream_info(stream_name("btc-perp", "FEATURES"))
    assert market.state.messages == n and feats.state.messages == n
