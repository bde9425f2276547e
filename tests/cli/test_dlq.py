"""`apex dlq ls|show|replay` against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from nats.aio.client import Client as NatsClient
from typer.testing import CliRunner

from apextrader.bus import dlq
from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.errors import Reject
from apextrader.bus.middleware import build_chain
from apextrader.bus.topology import Topology, stream_name
from apextrader.cli.main import app
from apextrader.contracts import Envelope
from apextrader.local.nats_server import EmbeddedNats
from tests.bus.helpers import chain_config, consumer_decl, fast_topology, publish_many, snapshot

T = TypeVar("T")
DLQ = stream_name("btc-perp", "DLQ")
MARKET = stream_name("btc-perp", "MARKET")


def on_server(server: EmbeddedNats, body: Callable[[NatsClient], Awaitable[T]]) -> T:
    async def main() -> T:
        nc = await connect(server.url)
        try:
            return await body(nc)
        finally:
            await nc.close()

    return asyncio.run(main())


def dead_letters(server: EmbeddedNats, topology: Topology, n: int) -> list[Envelope]:
    """Publish n snapshots and reject each into the DLQ through the real chain."""
    topo = fast_topology(topology)
    events = [snapshot(i) for i in range(n)]

    async def body(nc: NatsClient) -> None:
        js = nc.jetstream()
        await ensure_topology(js, topo)
        decl = consumer_decl(topo, "feature-engineer")

        async def handle(ev: Envelope) -> None:
            raise Reject("invalid", f"rejected {ev.id}")

        on_message = build_chain(chain_config(js, topo, decl, {"market.snapshot": handle}))
        await publish_many(js, events)
        sub = await js.pull_subscribe_bind(durable=decl.durable, stream=decl.stream)
        for msg in await sub.fetch(n, timeout=5):
            await on_message(msg)

    on_server(server, body)
    return events


def entries(server: EmbeddedNats) -> list[dlq.DlqEntry]:
    async def body(nc: NatsClient) -> list[dlq.DlqEntry]:
        return [e async for e in dlq.iter_entries(nc.jetstream(), DLQ)]

    return on_server(server, body)


@pytest.fixture
def cli(nats_server: EmbeddedNats) -> Callable[..., tuple[int, str]]:
    runner = CliRunner(env={"COLUMNS": "250", "APEX_NATS_URL": nats_server.url})

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["dlq", *args])
        return result.exit_code, result.output

    return invoke


def test_ls_show_replay_one(
    nats_server: EmbeddedNats, topology: Topology, cli: Callable[..., tuple[int, str]]
) -> None:
    (event,) = dead_letters(nats_server, topology, 1)
    (entry,) = entries(nats_server)
    code, out = cli("ls", "--pipeline", "btc-perp")
    assert code == 0
    assert "1 dead letter" in out and "feature-engineer" in out and "invalid" in out and str(entry.seq) in out
    code, out = cli("show", str(entry.seq))
    assert code == 0 and f"rejected {event.id}" in out and event.correlation_id in out

    code, out = cli("replay", str(entry.seq), "--pipeline", "btc-perp")
    assert code == 0 and f"{event.id}.replay.1" in out
    assert entries(nats_server) == []

    async def republished(nc: NatsClient) -> tuple[bytes, dict[str, str]]:
        msg = await nc.jetstream().get_last_msg(MARKET, "apex.btc-perp.market.snapshot.shared")
        return msg.data or b"", dict(msg.headers or {})

    data, headers = on_server(nats_server, republished)
    assert data == event.to_json()
    assert headers["Nats-Msg-Id"] == f"{event.id}.replay.1" and headers[dlq.REPLAY] == "1"
    assert headers["Apex-Correlation-Id"] == event.correlation_id and "traceparent" in headers


def test_replay_all_and_empty(
    nats_server: EmbeddedNats, topology: Topology, cli: Callable[..., tuple[int, str]]
) -> None:
    dead_letters(nats_server, topology, 3)
    code, out = cli("replay", "--all")
    assert code == 0 and "3 entries replayed" in out
    assert entries(nats_server) == []
    code, out = cli("ls")
    assert code == 0 and "DLQ is empty" in out


def test_entry_is_kept_when_the_replay_is_not_acknowledged(
    nats_server: EmbeddedNats, topology: Topology, cli: Callable[..., tuple[int, str]]
) -> None:
    dead_letters(nats_server, topology, 1)
    (entry,) = entries(nats_server)

    async def drop_market(nc: NatsClient) -> None:
        await nc.jetstream().delete_stream(MARKET)  # nothing will acknowledge the republish

    on_server(nats_server, drop_market)
    code, out = cli("replay", str(entry.seq))
    assert code == 1 and "Traceback" not in out
    assert [e.seq for e in entries(nats_server)] == [entry.seq]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["show", "999"], 1, "no DLQ entry 999"),
        (["replay"], 2, "give an entry ID or --all"),
        (["replay", "1", "--all"], 2, "not both"),
    ],
)
def test_bad_input_is_one_line(
    nats_server: EmbeddedNats,
    topology: Topology,
    cli: Callable[..., tuple[int, str]],
    args: list[str],
    code: int,
    needle: str,
) -> None:
    dead_letters(nats_server, topology, 1)
    got, out = cli(*args)
    assert got == code and needle in out and "Traceback" not in out
