"""The pipeline's KV bucket (`apex-<pipeline>`) with JSON values: live settings such as the canary
weight and the halt switch. Key names come from `bus.topology`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue


class KV:
    def __init__(self, kv: KeyValue) -> None:
        self.raw = kv

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str) -> KV:
        return cls(await js.key_value(bucket))

    async def get_json(self, key: str, default: Any = None) -> Any:
        """The decoded value, or `default` when the key is absent or deleted."""
        try:
            entry = await self.raw.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return default
        return orjson.loads(entry.value) if entry.value else default

    async def put_json(self, key: str, value: Any) -> int:
        """Store `value` as JSON; returns the new revision."""
        return int(await self.raw.put(key, orjson.dumps(value)))

    async def delete(self, key: str) -> None:
        await self.raw.delete(key)

    async def watch(self, key: str) -> AsyncIterator[Any]:
        """Yield the key's value now (if set) and on every change; None when it is deleted."""
        watcher = await self.raw.watch(key, include_history=False, ignore_deletes=False)
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    yield None
                else:
                    yield orjson.loads(entry.value)
        finally:
            with contextlib.suppress(Exception):  # the connection may be closed already
                await watcher.stop()  # type: ignore[no-untyped-call]
