"""After a run, before the server stops: what JetStream itself says happened (stream and consumer
state, the DLQ, the fills and the snapshots they trace back to), condensed into a `RunSummary`."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from apextrader.bus import dlq as dlq_headers
from apextrader.bus.history import read_range
from apextrader.bus.streamstats import discarded
from apextrader.bus.topology import Topology, stream_name, subject_matches
from apextrader.contracts import (
    Envelope,
    MarketSnapshotEvent,
    OrderApprovedEvent,
    OrderFilledEvent,
    decode_event,
)
from apextrader.report.run_summary import ConsumerAccount, FillRecord, LatencyStats, PriceSeries


async def iter_messages(js: JetStreamContext, stream: str, subject: str) -> AsyncIterator[Msg]:
    """Every message of `stream` matching `subject`, oldest first (the stream as it is now)."""
    state = (await js.stream_info(stream, subjects_filter=subject)).state
    matching = sum((state.subjects or {}).values())
    if matching:
        async for msg in read_range(
            js, stream, subject, state.first_seq, state.last_seq, expected=matching, batch=1000
        ):
            yield msg


async def iter_events(js: JetStreamContext, stream: str, subject: str) -> AsyncIterator[Envelope]:
    """`iter_messages`, decoded; what does not decode is skipped (it is in the DLQ, counted there)."""
    async for msg in iter_messages(js, stream, subject):
        try:
            yield decode_event(msg.data)
        except ValueError:
            continue


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


async def outstanding(js: JetStreamContext, topology: Topology, *, flow_only: bool = True) -> int:
    """Messages that flow consumers (with `flow_only=False`: all consumers, also the decision
    agents' market data) have not yet acked (or dead-lettered)."""
    total = 0
    for decl in topology.consumers:
        if decl.deliver_policy == "all" or not flow_only:
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
    """Every message each stream ever accepted (its last sequence): stored + discarded."""
    return {s.name: int((await js.stream_info(s.name)).state.last_seq) for s in topology.streams}


async def discarded_counts(js: JetStreamContext, topology: Topology) -> dict[str, int]:
    """Messages each stream removed under its limits: with limits retention and no deletes, all
    below the first stored sequence (`bus.streamstats.discarded`)."""
    return {s.name: discarded(await js.stream_info(s.name)) for s in topology.streams}


@dataclass(frozen=True)
class MarketRecord:
    snapshot_ids: set[str]  # every market.snapshot (fills are traced to these)
    prices: list[PriceSeries]  # closed-bar closes per (exchange, symbol)
    live_since: int  # live (non-backfill) snapshots published at or after `since`


async def market_record(js: JetStreamContext, topology: Topology, since: float) -> MarketRecord:
    """One pass over the MARKET stream: snapshot ids, closed-bar prices, live snapshots since `since`."""
    ids: set[str] = set()
    series: dict[tuple[str, str], dict[float, float]] = {}
    live = 0
    stream = stream_name(topology.pipeline, "MARKET")
    async for ev in iter_events(js, stream, f"apex.{topology.pipeline}.market.snapshot.>"):
        if not isinstance(ev, MarketSnapshotEvent):
            continue
        ids.add(ev.id)
        d = ev.data
        if d.backfill:
            continue
        t = ev.timestamp.timestamp()
        live += t >= since
        if d.closed:
            series.setdefault((d.exchange, d.symbol), {})[t] = d.bar.close
    prices = [
        PriceSeries(exchange=ex, symbol=sym, times=sorted(pts), closes=[pts[t] for t in sorted(pts)])
        for (ex, sym), pts in sorted(series.items())
    ]
    return MarketRecord(ids, prices, live)


async def orders(
    js: JetStreamContext, topology: Topology, snapshot_ids: set[str]
) -> tuple[list[FillRecord], Counter[str], Counter[str]]:
    """Fills (traced to snapshots), approvals per track and duplicate complete fills per track."""
    fills: list[FillRecord] = []
    approved: Counter[str] = Counter()
    completed: Counter[tuple[str, str]] = Counter()
    stream = stream_name(topology.pipeline, "ORDERS")
    async for ev in iter_events(js, stream, f"apex.{topology.pipeline}.order.>"):
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
                    fill_model=d.fill_model,
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


async def stage_latencies(js: JetStreamContext, topology: Topology, since: float) -> dict[str, LatencyStats]:
    """Per derived event type, `timestamp - origin_ts` of every event in the flow streams whose
    snapshot was published at or after `since` (unix time).

    Backfill (history published at start, `backfill: true`) is left out: its origin is the start-up
    burst, not a market tick."""
    found: dict[str, list[float]] = {}
    for stream in topology.streams:
        if stream.domain in ("MARKET", "DLQ", "ALERTS"):
            continue  # a snapshot is its own origin; DLQ entries and alerts are not a decision path
        for subject in stream.subjects:
            async for ev in iter_events(js, stream.name, subject):
                if getattr(ev.data, "backfill", False) or ev.origin_ts.timestamp() < since:
                    continue
                delay = (ev.timestamp - ev.origin_ts).total_seconds() * 1000
                found.setdefault(ev.type, []).append(delay)
    return {kind: latency_stats(ms) for kind, ms in sorted(found.items()) if ms}
