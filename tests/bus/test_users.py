"""Every agent user against every other agent's durables and inbox, on a real nats-server running the
pipeline's `authorization {}` block: each attempt is refused by the server (a permissions violation
naming that very subject), and the victims' durables are untouched."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from apextrader.bus.client import connect_once, ensure_topology
from apextrader.bus.topology import declare
from apextrader.bus.users import OPERATOR_USER, inbox_prefix, nats_authorization, nats_users, user_password
from apextrader.contracts import TradingPipeline, load_pipeline
from apextrader.local.nats_server import LocalCluster

REPO = Path(__file__).resolve().parents[2]
KEY = b"a-key-for-the-users-test-only"
VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"', re.IGNORECASE)


@pytest.fixture(scope="module")
def pipeline() -> TradingPipeline:
    return load_pipeline(REPO / "manifests" / "pipeline.yaml")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pipeline: TradingPipeline) -> Iterator[str]:
    bus = LocalCluster(tmp_path_factory.mktemp("nats"), auth_conf=nats_authorization(pipeline, KEY)).start()
    try:
        yield bus.url
    finally:
        bus.stop()


async def _login(url: str, pipeline: TradingPipeline, user: str, errors: list[str]) -> nats.NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(
        url,
        user=user,
        password=user_password(KEY, pipeline.name, user),
        inbox_prefix=inbox_prefix(user),
        error_cb=on_error,
        allow_reconnect=False,
    )


async def test_no_agent_reaches_another_agents_durables_or_inbox(
    server: str, pipeline: TradingPipeline
) -> None:
    topology = declare(pipeline.spec, pipeline.name)
    admin = await connect_once(
        server, user=OPERATOR_USER, password=user_password(KEY, pipeline.name, OPERATOR_USER)
    )
    js = admin.jetstream(timeout=10)
    await ensure_topology(js, topology)
    before = {(c.stream, c.durable): await js.consumer_info(c.stream, c.durable) for c in topology.consumers}
    agents = [u.name for u in nats_users(pipeline) if u.name != OPERATOR_USER]
    victims = [(c.stream, c.durable, c.filter_subjects[0]) for c in topology.consumers]
    attempts = 0
    for user in agents:
        errors: list[str] = []
        nc = await _login(server, pipeline, user, errors)
        wanted: set[str] = set()
        for stream, durable, filt in victims:
            if durable == user:
                continue
            for subj in (
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
                f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.{filt}",
                f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
                f"$JS.API.CONSUMER.DELETE.{stream}.{durable}",
                f"$JS.ACK.{stream}.{durable}.1.1.1.0.0",
            ):
                await nc.publish(subj, b"{}", reply=f"{inbox_prefix(user)}.probe")
                wanted.add(subj)
        for other in agents:
            if other != user:
                await nc.subscribe(f"{inbox_prefix(other)}.>")
                await nc.subscribe(f"_INBOX.{other}")
                wanted |= {f"{inbox_prefix(other)}.>", f"_INBOX.{other}"}
        await nc.flush(timeout=10)
        for _ in range(100):  # violations arrive asynchronously, one -ERR each
            # nats-py lower-cases the server's message
            refused = {m.group(2) for e in errors if (m := VIOLATION.search(e))}
            if {w.lower() for w in wanted} <= refused:
                break
            await asyncio.sleep(0.05)
        missing = {w.lower() for w in wanted} - refused
        assert missing == set(), (user, sorted(missing)[:5])
        attempts += len(wanted)
        await nc.close()
    after = {(c.stream, c.durable): await js.consumer_info(c.stream, c.durable) for c in topology.consumers}
    for k, info in after.items():
        assert info.config.filter_subject == before[k].config.filter_subject, k
        assert info.delivered.consumer_seq == before[k].delivered.consumer_seq, k
    await admin.close()
    assert attempts > 1000  # 14 users x their victims: the test really tried them all
