"""The operator's side of the bus: create a pipeline's streams, durable consumers and KV bucket from
`bus.topology.declare`, write the canary keys and read back what the agents applied.

Connections are pooled per URL so a timer tick does not reconnect.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NoKeysError, NotFoundError

from apextrader.bus.client import connect, ensure_kv, ensure_topology
from apextrader.bus.kv import KV
from apextrader.bus.topology import Topology


class BusUnavailable(Exception):
    """NATS could not be reached or refused an admin request (transient: retry with back-off)."""


class BusPool:
    def __init__(self, connect_timeout: float = 2.0) -> None:
        self._conns: dict[str, NATS] = {}
        self._lock = asyncio.Lock()
        self._timeout = connect_timeout

    async def connect(self, url: str) -> NATS:
        async with self._lock:
            nc = self._conns.get(url)
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
                )
            except Exception as exc:  # nats-py raises several unrelated types for "unreachable"
                raise BusUnavailable(f"cannot connect to {url}: {exc}") from exc
            self._conns[url] = nc
            return nc

    async def close(self) -> None:
        async with self._lock:
            for nc in self._conns.values():
                if nc.is_connected:
                    await nc.close()
            self._conns.clear()

    async def bus(self, url: str, bucket: str) -> PipelineBus:
        return PipelineBus(await self.connect(url), bucket)


class PipelineBus:
    def __init__(self, nc: NATS, bucket: str) -> None:
        self.nc, self.bucket = nc, bucket
        self.js = nc.jetstream(timeout=5)
        self._kv: KV | None = None

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
            raise BusUnavailable(f"provisioning failed: {exc}") from exc

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
