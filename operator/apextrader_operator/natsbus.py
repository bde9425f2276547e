"""The operator's side of the bus: create a pipeline's streams, durable consumers and KV bucket from
`bus.topology.declare`, write the canary keys and read back what the agents applied.

Connections are pooled per URL so a timer tick does not reconnect.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from apextrader.bus.topology import ConsumerDecl, StreamDecl, Topology

_POLICIES = {
    "all": DeliverPolicy.ALL,
    "new": DeliverPolicy.NEW,
    "last_per_subject": DeliverPolicy.LAST_PER_SUBJECT,
}


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
                nc = await nats.connect(
                    url, connect_timeout=self._timeout, max_reconnect_attempts=0, allow_reconnect=False
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


def _stream_config(s: StreamDecl) -> StreamConfig:
    return StreamConfig(
        name=s.name,
        subjects=list(s.subjects),
        max_age=s.max_age_s,
        max_bytes=s.max_bytes,
        duplicate_window=s.duplicate_window_s,
    )


def _consumer_config(c: ConsumerDecl) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=c.durable,
        filter_subjects=list(c.filter_subjects),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=c.ack_wait_s,
        max_deliver=c.max_deliver,
        backoff=list(c.backoff_s) or None,
        deliver_policy=_POLICIES[c.deliver_policy],
        max_ack_pending=c.max_ack_pending,
    )


class PipelineBus:
    def __init__(self, nc: NATS, bucket: str) -> None:
        self.nc, self.bucket = nc, bucket
        self.js = nc.jetstream(timeout=5)
        self._kv: KeyValue | None = None

    async def provision(self, topology: Topology) -> None:
        """Idempotent: add or update each stream, add missing consumers, drop canary consumers that
        are no longer declared (after a promote or a removed canary), ensure the KV bucket."""
        try:
            for s in topology.streams:
                cfg = _stream_config(s)
                try:
                    info = await self.js.stream_info(s.name)
                    if (info.config.subjects, info.config.max_bytes) != (cfg.subjects, cfg.max_bytes) or abs(
                        (info.config.max_age or 0) - (cfg.max_age or 0)
                    ) > 1e-6:
                        await self.js.update_stream(cfg)
                except NotFoundError:
                    await self.js.add_stream(cfg)
            declared: dict[str, set[str]] = {}
            for c in topology.consumers:
                declared.setdefault(c.stream, set()).add(c.durable)
                try:
                    await self.js.consumer_info(c.stream, c.durable)
                except NotFoundError:
                    await self.js.add_consumer(c.stream, _consumer_config(c))
            for s in topology.streams:
                for consumer in await self.js.consumers_info(s.name):
                    name = consumer.name
                    if name.endswith("-canary") and name not in declared.get(s.name, set()):
                        await self.js.delete_consumer(s.name, name)
            await self.kv()
        except BusUnavailable:
            raise
        except Exception as exc:
            raise BusUnavailable(f"provisioning failed: {exc}") from exc

    async def kv(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(self.bucket)
            except BucketNotFoundError:
                self._kv = await self.js.create_key_value(KeyValueConfig(bucket=self.bucket, history=5))
        return self._kv

    async def put_json(self, key: str, value: Any) -> None:
        kv = await self.kv()
        data = json.dumps(value).encode()
        try:
            current = await kv.get(key)
            if current.value == data:
                return  # unchanged: no new revision, watchers are not woken
        except KeyNotFoundError:
            pass
        await kv.put(key, data)

    async def get_json(self, key: str) -> Any:
        kv = await self.kv()
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        return json.loads(entry.value) if entry.value else None

    async def entries(self, prefix: str) -> dict[str, Any]:
        """Every key under `prefix` (e.g. `applied.risk-manager.`) with its JSON value."""
        kv = await self.kv()
        try:
            keys = await kv.keys()
        except NotFoundError:  # nats-py: no keys at all
            return {}
        out = {}
        for key in keys:
            if key.startswith(prefix):
                value = await self.get_json(key)
                if value is not None:
                    out[key] = value
        return out
