"""Connecting to NATS and creating a pipeline's streams, consumers and KV bucket (idempotently)
from `bus.topology.declare`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from apextrader.bus.topology import ConsumerDecl, StreamDecl, Topology
from apextrader.bus.users import inbox_prefix

log = logging.getLogger(__name__)

_DELIVER: dict[str, js_api.DeliverPolicy] = {
    "all": js_api.DeliverPolicy.ALL,
    "new": js_api.DeliverPolicy.NEW,
    "last_per_subject": js_api.DeliverPolicy.LAST_PER_SUBJECT,
}


async def connect(url: str, *, name: str = "apextrader", **options: Any) -> NatsClient:
    """Connect with endless reconnects (a restarted server is picked up again) and quiet logs.
    `url` may list a cluster's servers comma-separated (any of them will do)."""

    async def _error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def _disconnected() -> None:
        log.info("nats: disconnected from %s", url)

    async def _reconnected() -> None:
        log.info("nats: reconnected to %s", url)

    params: dict[str, Any] = {
        "servers": server_list(url),
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": 5,
        "error_cb": _error,
        "disconnected_cb": _disconnected,
        "reconnected_cb": _reconnected,
    }
    params.update(options)
    return await nats.connect(**with_inbox(params))


def server_list(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


def with_inbox(params: dict[str, Any]) -> dict[str, Any]:
    """A logged-in user receives replies on its own prefix (`bus.users.inbox_prefix`), the only
    inbox its permissions let it subscribe to."""
    if params.get("user") and "inbox_prefix" not in params:
        return {**params, "inbox_prefix": inbox_prefix(str(params["user"]))}
    return params


async def connect_once(url: str, *, name: str = "apextrader", **options: Any) -> NatsClient:
    """Connect for a short command: two quick tries, no reconnect loop, no error logs
    (raises `nats.errors.NoServersError` when nobody answers)."""

    async def _quiet(exc: Exception) -> None:
        return None

    params: dict[str, Any] = {
        "servers": server_list(url),
        "name": name,
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.1,
        "connect_timeout": 2,
        "error_cb": _quiet,
        **options,
    }
    return await nats.connect(**with_inbox(params))


def stream_config(decl: StreamDecl) -> js_api.StreamConfig:
    # Limits retention everywhere: history reads and the accounting need acked events too (interest
    # retention would delete them, and drop at once an event type nobody consumes). What differs is
    # what a full stream does: protected ones refuse new events (docs/bus.md, "Retention").
    return js_api.StreamConfig(
        name=decl.name,
        subjects=list(decl.subjects),
        storage=js_api.StorageType.FILE,
        retention=js_api.RetentionPolicy.LIMITS,
        max_age=decl.max_age_s,
        max_bytes=decl.max_bytes,
        duplicate_window=decl.duplicate_window_s,
        discard=js_api.DiscardPolicy.NEW if decl.discard_new else js_api.DiscardPolicy.OLD,
        num_replicas=decl.replicas,
    )


def consumer_config(decl: ConsumerDecl) -> js_api.ConsumerConfig:
    single = len(decl.filter_subjects) == 1
    return js_api.ConsumerConfig(
        name=decl.durable,
        durable_name=decl.durable,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=decl.ack_wait_s,
        max_deliver=decl.max_deliver,
        # No server-side `backoff`: it would replace ack_wait by its first step (0.5 s) and redeliver
        # a slow handler's event while it still runs. The chain naks with `decl.backoff_s` itself;
        # ack_wait covers crashed consumers.
        deliver_policy=_DELIVER[decl.deliver_policy],
        filter_subject=decl.filter_subjects[0] if single else None,
        filter_subjects=None if single else list(decl.filter_subjects),
        max_ack_pending=decl.max_ack_pending,
        # 0 = the stream's replicas: a stream scaled in place takes its consumers (and their ack
        # state) along; an explicit count would make the update refuse and force a recreate.
        num_replicas=0,
    )


async def ensure_stream(js: JetStreamContext, decl: StreamDecl) -> None:
    config = stream_config(decl)
    try:
        await js.stream_info(decl.name)
    except NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


async def ensure_consumer(js: JetStreamContext, decl: ConsumerDecl) -> None:
    config = consumer_config(decl)
    try:
        # CONSUMER.CREATE with the same name creates or updates the mutable fields.
        await js.add_consumer(decl.stream, config)
    except BadRequestError:
        # A field that cannot change (e.g. deliver policy): recreate from the declaration.
        log.warning("consumer %s/%s changed incompatibly; recreating it", decl.stream, decl.durable)
        await js.delete_consumer(decl.stream, decl.durable)
        await js.add_consumer(decl.stream, config)


async def ensure_kv(js: JetStreamContext, bucket: str, replicas: int = 1) -> None:
    """Create the bucket, or change its replicas in place (its stream `KV_<bucket>`)."""
    try:
        info = await js.stream_info(f"KV_{bucket}")
    except NotFoundError:
        await js.create_key_value(
            bucket=bucket, history=5, storage=js_api.StorageType.FILE, replicas=replicas
        )
        return
    if (info.config.num_replicas or 1) != replicas:
        await js.update_stream(replace(info.config, num_replicas=replicas))


async def ensure_topology(js: JetStreamContext, topology: Topology) -> None:
    """Create or update every stream, durable consumer and the KV bucket; safe to call repeatedly."""
    # Concurrent requests on the one connection: streams (and the bucket), then their consumers.
    await asyncio.gather(
        *(ensure_stream(js, stream) for stream in topology.streams),
        ensure_kv(js, topology.kv_bucket, topology.replicas),
    )
    await asyncio.gather(*(ensure_consumer(js, consumer) for consumer in topology.consumers))
