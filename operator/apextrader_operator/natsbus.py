"""The operator's side of the bus: create a pipeline's streams, durable consumers and KV bucket from
`bus.topology.declare`, write the canary keys and read back what the agents applied.

Connections are pooled per URL and login so a timer tick does not reconnect. Credentials are passed
as connect options, never in a URL, and URLs are shown without their user info in every message
(those messages reach the status and the logs).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NoKeysError, NotFoundError

from apextrader.bus.client import connect, ensure_kv, ensure_topology
from apextrader.bus.kv import KV
from apextrader.bus.streamstats import StreamWatch
from apextrader.bus.topology import Topology

if TYPE_CHECKING:
    from apextrader_operator.credentials import BusLogin


def redact_url(url: str) -> str:
    """`nats://user:secret@host:4222` → `nats://host:4222` (for messages)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class BusUnavailable(Exception):
    """NATS could not be reached or refused an admin request (transient: retry with back-off)."""

    def __init__(self, message: str, reason: str = "BusUnreachable") -> None:
        super().__init__(message)
        self.reason = reason


class BusPool:
    def __init__(self, connect_timeout: float = 2.0) -> None:
        self._conns: dict[str, NATS] = {}
        self._lock = asyncio.Lock()
        self._timeout = connect_timeout

    async def connect(self, url: str, options: dict[str, str] | None = None, key: str | None = None) -> NATS:
        """A pooled connection to `url`; `options`: credentials (`user`, `password`) for nats-py;
        `key`: the pool slot (default: the URL)."""
        slot = key or url
        async with self._lock:
            nc = self._conns.get(slot)
            if nc is not None and nc.is_connected:
                return nc
            try:
                # no endless reconnects here: a dead server must surface as a TemporaryError
                nc = await connect(
                    url,
                    name="apextrader-operator",
                    connect_timeout=self._timeout,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    **(options or {}),
                )
            except Exception as exc:  # nats-py raises several unrelated types for "unreachable"
                raise BusUnavailable(f"cannot connect to {redact_url(url)}: {exc}") from exc
            self._conns[slot] = nc
            return nc

    async def close(self) -> None:
        async with self._lock:
            for nc in self._conns.values():
                if nc.is_connected:
                    await nc.close()
            self._conns.clear()

    async def bus(self, login: BusLogin | str, bucket: str) -> PipelineBus:
        """The pipeline's bus; `login`: URL and credentials (`credentials.operator_login`), or a URL."""
        if isinstance(login, str):
            return PipelineBus(await self.connect(login), bucket)
        return PipelineBus(await self.connect(login.url, login.options(), login.pool_key), bucket)


class PipelineBus:
    def __init__(self, nc: NATS, bucket: str) -> None:
        self.nc, self.bucket = nc, bucket
        self.js = nc.jetstream(timeout=5)
        self._kv: KV | None = None
        self._streams = StreamWatch()

    async def observe_streams(self, topology: Topology) -> dict[str, int]:
        """Export each stream's discards and fill ratio (the operator's /metrics); returns the
        discards per stream. Best effort: a bus hiccup skips one observation."""
        try:
            return await self._streams.observe(self.js, topology)
        except Exception:  # nats-py raises several types for "not now"; the next tick retries
            return {}

    async def provision(self, topology: Topology) -> None:
        """Idempotent (`bus.client.ensure_topology`), and drop canary consumers that are no longer
        declared (after a promote or a removed canary) so they do not pile up unacked messages."""
        try:
            await ensure_topology(self.js, topology)
            declared = {(c.stream, c.durable) for c in topology.consumers}
            for s in topology.streams:
                for consumer in await self.js.consumers_info(s.name):
                    if consumer.name.endswith("-canary") and (s.name, consumer.name) not in declared:
                        await self.js.delete_consumer(s.name, consumer.name)
        except Exception as exc:
            raise BusUnavailable(f"provisioning failed: {exc}", reason="ProvisioningFailed") from exc

    async def kv(self) -> KV:
        if self._kv is None:
            await ensure_kv(self.js, self.bucket)
            self._kv = await KV.open(self.js, self.bucket)
        return self._kv

    async def put_json(self, key: str, value: Any) -> None:
        """Write only when the value changes: no new revision, agents' watches are not woken."""
        kv = await self.kv()
        try:
            current = await kv.raw.get(key)
            if current.value and orjson.loads(current.value) == value:
                return
        except (KeyNotFoundError, KeyDeletedError):
            pass
        await kv.put_json(key, value)

    async def get_json(self, key: str) -> Any:
        return await (await self.kv()).get_json(key)

    async def entries(self, prefix: str) -> dict[str, Any]:
        """Every key under `prefix` (e.g. `applied.risk-manager.canary.`) with its JSON value."""
        kv = await self.kv()
        try:
            keys = await kv.raw.keys(filters=[prefix])
        except (NoKeysError, NotFoundError):
            return {}
        out = {}
        for key in keys:
            if key.startswith(prefix):
                value = await kv.get_json(key)
                if value is not None:
                    out[key] = value
        return out
