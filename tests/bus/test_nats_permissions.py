"""The per-agent NATS users against a real nats-server: each agent can do its whole job (publish what
it emits, bind/fetch/ack its durables, read history, read KV, echo its applied weight) and nothing
else of the pipeline's flow (another agent's events, the canary weight, another track)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError

from apextrader.bus.client import ensure_kv, ensure_topology
from apextrader.bus.history import history
from apextrader.bus.kv import KV
from apextrader.bus.topology import KV_CANARY_WEIGHT, declare, kv_applied_key, stream_name, subject
from apextrader.bus.users import inbox_prefix
from apextrader.contracts import Envelope, TradingPipeline, load_pipeline
from apextrader.contracts.names import EventType
from apextrader.local.nats_server import free_port
from apextrader.runtime import Agent, AgentRunner, AgentSettings, Handler
from apextrader_operator.builders.nats import build_nats_config, nats_config_volume
from apextrader_operator.builders.security import OPERATOR_USER, nats_authorization, user_password
from tests.bus.helpers import publish_many, snapshot
from tests.fixtures.tools import REPO, require_tool

KEY = b"pipeline-key-for-tests"


@pytest.fixture
def pipeline() -> TradingPipeline:
    return load_pipeline(REPO / "manifests" / "pipeline.yaml")


@pytest.fixture
def secured_server(tmp_path: Path, pipeline: TradingPipeline) -> Iterator[str]:
    binary = require_tool("nats-server")
    port = free_port("127.0.0.1")
    (tmp_path / "auth.conf").write_text(nats_authorization(pipeline, KEY))
    (tmp_path / "nats.conf").write_text(
        f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{tmp_path / "js"}" }}\ninclude "auth.conf"\n'
    )
    check = subprocess.run([binary, "-c", str(tmp_path / "nats.conf"), "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    log = (tmp_path / "nats.log").open("w")
    proc = subprocess.Popen([binary, "-c", str(tmp_path / "nats.conf")], stdout=log, stderr=log)
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
            break
        time.sleep(0.05)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


class Session:
    """A client logged in as one user, collecting the server's permission errors."""

    def __init__(self, timeout: float) -> None:
        self.errors: list[str] = []
        self.nc: NatsClient | None = None
        # Short for agents: a denied publish is only noticed by its PubAck never coming.
        self.timeout = timeout

    async def _error(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    @property
    def js(self):  # type: ignore[no-untyped-def]
        assert self.nc is not None
        return self.nc.jetstream(timeout=self.timeout)


@contextlib.asynccontextmanager
async def login(
    url: str, pipeline: TradingPipeline, user: str, api_wait: float = 0.5
) -> AsyncIterator[Session]:
    session = Session(api_wait)
    session.nc = await nats.connect(
        url,
        user=user,
        password=user_password(KEY, pipeline.name, user),
        error_cb=session._error,
        allow_reconnect=False,
        connect_timeout=2,
        inbox_prefix=inbox_prefix(user),
    )
    try:
        yield session
    finally:
        await session.nc.close()


async def _denied(session: Session, coro: object) -> None:
    before = len(session.errors)
    with pytest.raises((NatsTimeoutError, nats.errors.NoRespondersError, nats.js.errors.APIError)):
        await coro  # type: ignore[misc]
    await asyncio.sleep(0.05)
    new = session.errors[before:]
    assert any("permissions violation" in e.lower() for e in new), session.errors


async def test_agents_can_do_their_job_and_nothing_else(
    secured_server: str, pipeline: TradingPipeline
) -> None:
    p = pipeline.name
    async with login(secured_server, pipeline, OPERATOR_USER, api_wait=10) as op:
        await ensure_topology(op.js, declare(pipeline.spec, p))
        await KV(await op.js.key_value(f"apex-{p}")).put_json(KV_CANARY_WEIGHT, 5)
        await op.js.publish(subject(p, "signal.validated", "canary"), b"{}")
        await op.js.publish(subject(p, "order.filled", "canary"), b"{}")

    async with login(secured_server, pipeline, "risk-manager-canary") as risk:
        js = risk.js
        # what it emits
        await js.publish(subject(p, "order.approved", "canary"), b"{}")
        await js.publish(f"apex.{p}.dlq.risk-manager.canary", b"{}")
        # its durable on SIGNALS: bind, fetch, ack
        sub = await js.pull_subscribe_bind(durable="risk-manager-canary", stream=stream_name(p, "SIGNALS"))
        (msg,) = await sub.fetch(1, timeout=2)
        assert msg.subject == subject(p, "signal.validated", "canary")
        await msg.ack_sync(timeout=2)
        # history of its fills (an ephemeral consumer)
        assert [e async for e in history(js, p, "order.filled", last=5, track="canary")] == []
        # KV: read the weight, echo what it applied
        kv = await KV.open(js, f"apex-{p}")
        assert await kv.get_json(KV_CANARY_WEIGHT) == 5
        await kv.put_json(kv_applied_key("risk-manager", "canary", "pod-1"), {"weight": 5})
        assert risk.errors == []
        # ... and nothing else
        await _denied(risk, js.publish(subject(p, "order.filled", "canary"), b"{}"))
        await _denied(risk, js.publish(subject(p, "order.approved", "stable"), b"{}"))
        await _denied(risk, kv.put_json(KV_CANARY_WEIGHT, 100))
        await _denied(risk, kv.put_json(kv_applied_key("risk-manager", "stable", "pod-1"), {"weight": 95}))
        await _denied(risk, js.delete_stream(stream_name(p, "ORDERS")))

    async with login(secured_server, pipeline, "market-scanner-shared") as scanner:
        await scanner.js.publish(subject(p, "market.snapshot", "shared"), b"{}")
        await _denied(scanner, scanner.js.publish(subject(p, "signal.proposed", "stable"), b"{}"))
        # it reads no stream, so it cannot read another's history either
        with pytest.raises((NatsTimeoutError, nats.js.errors.APIError)):
            _ = [e async for e in history(scanner.js, p, "order.filled", last=5)]

    async with login(secured_server, pipeline, "backtester-shared") as backtester:
        for track in ("stable", "canary"):  # it forwards each signal on its own track
            await backtester.js.publish(subject(p, "signal.validated", track), b"{}")
        await _denied(backtester, backtester.js.publish(subject(p, "order.approved", "stable"), b"{}"))


async def test_wrong_password_is_refused(secured_server: str) -> None:
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
        await nats.connect(
            secured_server,
            user="execution-stable",
            password="guess",
            allow_reconnect=False,
            connect_timeout=2,
        )


def test_operator_nats_conf_with_auth_include_is_valid(tmp_path: Path, pipeline: TradingPipeline) -> None:
    """The operator's managed nats.conf with users on, with auth.conf beside it as the projected
    volume mounts them, passes `nats-server -t`."""
    bus = pipeline.spec.bus.managed
    assert bus is not None
    volume = nats_config_volume(pipeline)
    paths = [s.get("secret", {}).get("items", [{}])[0].get("path") for s in volume["projected"]["sources"]]
    assert "auth.conf" in paths
    conf = build_nats_config(pipeline, bus, auth=True)["data"]["nats.conf"]
    conf = conf.replace("/data/jetstream", str(tmp_path / "js"))
    (tmp_path / "nats.conf").write_text(conf)
    (tmp_path / "auth.conf").write_text(nats_authorization(pipeline, KEY))
    env = {**os.environ, "POD_NAME": "btc-perp-nats-0"}
    binary = require_tool("nats-server")
    out = subprocess.run(
        [binary, "-c", str(tmp_path / "nats.conf"), "-t"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr


class SnapshotCounter(Agent):
    """A feature engineer that only counts what it handles (it derives nothing)."""

    agent_id = "feature-engineer"
    seen: ClassVar[list[str]] = []

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"market.snapshot": self.on_snapshot}

    async def on_snapshot(self, ev: Envelope) -> None:
        self.seen.append(ev.id)


async def test_the_real_runtime_runs_as_its_user_as_the_operator_deploys_it(
    secured_server: str, pipeline: TradingPipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent runtime with the Deployment's settings (its user from the Secret's keys,
    APEX_ENSURE_TOPOLOGY=false) binds, handles events, watches its max-deliveries advisories and
    reads KV without a single permissions violation; the password appears in no log line."""
    p = pipeline.name
    async with login(secured_server, pipeline, OPERATOR_USER, api_wait=10) as op:
        await ensure_topology(op.js, declare(pipeline.spec, p))
        await ensure_kv(op.js, f"apex-{p}")
        await publish_many(op.js, [snapshot(i) for i in range(3)])
    user = "feature-engineer-shared"
    password = user_password(KEY, p, user)
    env = {"APEX_NATS_USER": user, "APEX_NATS_PASSWORD": password, "APEX_ENSURE_TOPOLOGY": "false"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = AgentSettings(
            agent="feature-engineer", nats_url=secured_server, http_port=0, http_host="127.0.0.1"
        )
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert settings.nats_user == user and not settings.ensure_topology
    SnapshotCounter.seen = []
    runner = AgentRunner(SnapshotCounter, settings, pipeline=pipeline, configure_logging=False)
    caplog.set_level(logging.DEBUG)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 10)
        for _ in range(100):
            if len(SnapshotCounter.seen) == 3:
                break
            await asyncio.sleep(0.05)
        assert len(SnapshotCounter.seen) == 3
        assert runner.readiness() == {"nats": True, "consumers": True, "agent": True}
        await asyncio.sleep(0.3)  # a denied subscription is reported asynchronously
    finally:
        runner.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
    text = caplog.text.lower()
    assert "permissions violation" not in text and "authorization" not in text, caplog.text
    assert password not in caplog.text
