"""After a run, before the server stops: what JetStream itself says happened (stream and consumer
state, the DLQ, the fills and the snapshots they trace back to), condensed into a `RunSummary`."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import FetchTimeoutError

from apextrader.bus import dlq as dlq_headers
from apextrader.bus.topology import Topology, stream_name, subject_matches
from apextrader.contracts import MarketSnapshotEvent, OrderApprovedEvent, OrderFilledEvent, decode_event
from apextrader.report.run_summary import ConsumerAccount, FillRecord, LatencyStats, PriceSeries


async def iter_messages(js: JetStreamContext, stream: str, subject: str) -> AsyncIterator[Msg]:
    """Every message of `stream` matching `subject`, oldest first, through an ack-less ephemeral consumer."""
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return
    end = info.state.last_seq
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=js_api.ConsumerConfig(
            ack_policy=js_api.AckPolicy.NONE,
            deliver_policy=js_api.DeliverPolicy.ALL,
            mem_storage=True,
            inactive_threshold=30.0,
        ),
    )
    try:
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=1.0)
            except (TimeoutError, FetchTimeoutError):
                return
            for msg in msgs:
                yield msg
                if msg.metadata.sequence.stream >= end or msg.metadata.num_pending == 0:
                    return
    finally:
        await sub.unsubscribe()


async def dead_letter_counts(
    js: JetStreamContext, topology: Topology
) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """DLQ entries per (original stream, durable) and per reason."""
    per_consumer: Counter[tuple[str, str]] = Counter()
    per_reason: Counter[str] = Counter()
    dlq = stream_name(topology.pipeline, "DLQ")
    async for msg in iter_messages(js, dlq, f"apex.{topology.pipeline}.dlq.>"):
        h = msg.headers or {}
        agent, track = h.get(dlq_headers.AGENT, "?"), h.get(dlq_headers.TRACK, "?")
        per_consumer[(h.get(dlq_headers.STREAM, "?"), f"{agent}-{track}")] += 1
        per_reason[h.get(dlq_headers.REASON, "unknown")] += 1
    return per_consumer, per_reason


async def consumer_accounts(
    js: JetStreamContext, topology: Topology
) -> tuple[list[ConsumerAccount], Counter[str]]:
    """For every flow consumer (deliver all): matched = acked + DLQ + pending, from JetStream's state."""
    dlq_counts, reasons = await dead_letter_counts(js, topology)
    accounts = []
    subject_counts: dict[str, dict[str, int]] = {}
    for decl in topology.consumers:
        if decl.deliver_policy != "all":
            continue  # latest-state feeds (market data for marks/depth) are not a flow to account for
        if decl.stream not in subject_counts:
            info = await js.stream_info(decl.stream, subjects_filter=">")
            subject_counts[decl.stream] = dict(info.state.subjects or {})
        matched = sum(
            n
            for subj, n in subject_counts[decl.stream].items()
            if any(subject_matches(f, subj) for f in decl.filter_subjects)
        )
        ci = await js.consumer_info(decl.stream, decl.durable)
        pending = int(ci.num_pending or 0) + int(ci.num_ack_pending or 0)
        dead = dlq_counts.get((decl.stream, decl.durable), 0)
        accounts.append(
            ConsumerAccount(
                stream=decl.stream,
                durable=decl.durable,
                matched=matched,
                acked=matched - dead - pending,
                pending=pending,
                dlq=dead,
            )
        )
    return accounts, reasons


async def outstanding(js: JetStreamContext, topology: Topology) -> int:
    """Messages that flow consumers have not yet acked (or dead-lettered)."""
    total = 0
    for decl in topology.consumers:
        if decl.deliver_policy == "all":
            ci = await js.consumer_info(decl.stream, decl.durable)
            total += int(ci.num_pending or 0) + int(ci.num_ack_pending or 0)
    return total


async def drain(js: JetStreamContext, topology: Topology, within_s: float) -> int:
    """Wait until every flow consumer has caught up (or `within_s` passed); returns what is still outstanding."""
    deadline = asyncio.get_running_loop().time() + within_s
    left = await outstanding(js, topology)
    while left and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.25)
        left = await outstanding(js, topology)
    return left


async def published_counts(js: JetStreamContext, topology: Topology) -> dict[str, int]:
    return {s.name: int((await js.stream_info(s.name)).state.messages) for s in topology.streams}


async def snapshot_ids_and_prices(
    js: JetStreamContext, topology: Topology
) -> tuple[set[str], list[PriceSeries]]:
    """Ids of every market.snapshot (for tracing) and the closed-bar closes per (exchange, symbol)."""
    ids: set[str] = set()
    series: dict[tuple[str, str], dict[float, float]] = {}
    stream = stream_name(topology.pipeline, "MARKET")
    async for msg in iter_messages(js, stream, f"apex.{topology.pipeline}.market.snapshot.>"):
        try:
            ev = decode_event(msg.data)
        except ValueError:
            continue
        if not isinstance(ev, MarketSnapshotEvent):
            continue
        ids.add(ev.id)
        d = ev.data
        if d.closed and not d.backfill:
            series.setdefault((d.exchange, d.symbol), {})[ev.timestamp.timestamp()] = d.bar.close
    prices = [
        PriceSeries(exchange=ex, symbol=sym, times=sorted(pts), closes=[pts[t] for t in sorted(pts)])
        for (ex, sym), pts in sorted(series.items())
    ]
    return ids, prices


async def orders(
    js: JetStreamContext, topology: Topology, snapshot_ids: set[str]
) -> tuple[list[FillRecord], Counter[str], Counter[str]]:
    """Fills (traced to snapshots), approvals per track and duplicate complete fills per track."""
    fills: list[FillRecord] = []
    approved: Counter[str] = Counter()
    completed: Counter[tuple[str, str]] = Counter()
    stream = stream_name(topology.pipeline, "ORDERS")
    async for msg in iter_messages(js, stream, f"apex.{topology.pipeline}.order.>"):
        try:
            ev = decode_event(msg.data)
        except ValueError:
            continue
        if isinstance(ev, OrderApprovedEvent):
            approved[ev.track] += 1
        elif isinstance(ev, OrderFilledEvent):
            d = ev.data
            if d.status == "filled":
                completed[(ev.track, d.client_order_id)] += 1
            fills.append(
                FillRecord(
                    time=ev.timestamp.timestamp(),
                    track=ev.track,
                    exchange=d.exchange,
                    symbol=d.symbol,
                    side=d.side,
                    price=d.avg_price,
                    amount=d.filled,
                    slippage_bps=d.slippage_bps,
                    correlation_id=ev.correlation_id,
                    traced=ev.correlation_id in snapshot_ids,
                )
            )
    duplicates: Counter[str] = Counter()
    for (track, _), n in completed.items():
        duplicates[track] += max(0, n - 1)
    return fills, approved, duplicates


def latency_stats(ms: list[float]) -> LatencyStats:
    """Nearest-rank p50/p99 (no interpolation: every reported figure is an observed latency)."""
    xs = sorted(ms)

    def rank(q: float) -> float:
        return xs[max(0, min(len(xs) - 1, math.ceil(q * len(xs)) - 1))]

    return LatencyStats(count=len(xs), p50_ms=rank(0.5), p99_ms=rank(0.99), max_ms=xs[-1])


async def stage_latencies(js: JetStreamContext, topology: Topology) -> dict[str, LatencyStats]:
    """Per derived event type, `timestamp - origin_ts` of every live event in the flow streams.

    Backfill (history published at start, `backfill: true`) is left out: its origin is the start-up
    burst, not a market tick."""
    found: dict[str, list[float]] = {}
    for stream in topology.streams:
        if stream.domain in ("MARKET", "DLQ", "ALERTS"):
            continue  # a snapshot is its own origin; DLQ entries and alerts are not a decision path
        for subject in stream.subjects:
            async for msg in iter_messages(js, stream.name, subject):
                try:
                    ev = decode_event(msg.data)
                except ValueError:
                    continue
                if getattr(ev.data, "backfill", False):
                    continue
                delay = (ev.timestamp - ev.origin_ts).total_seconds() * 1000
                found.setdefault(ev.type, []).append(delay)
    return {kind: latency_stats(ms) for kind, ms in sorted(found.items()) if ms}
