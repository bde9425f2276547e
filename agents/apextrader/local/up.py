"""`apex up`: the whole TradingPipeline on one machine.

Order (docs/conventions.md §6, each step health-checked): embedded nats-server(s) with JetStream and
the pipeline's per-agent users (`--bus-replicas 3`: a 3-server cluster on loopback) → streams,
consumers and KV from `bus.topology` → the seven agents in pipeline order, each `/ready` before the
next → run (live view, canary loop, a watchdog that restarts a dead server or agent) → graceful stop
→ JetStream's own accounting collected into `summary.json` and the HTML report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

import nats.errors
from rich.console import Console
from rich.live import Live

from apextrader.bus.kv import KV
from apextrader.bus.metrics import MetricName as M
from apextrader.bus.topology import KV_CANARY_REQUEST, Topology, declare
from apextrader.canary.analysis import thresholds
from apextrader.canary.weights import track_weights
from apextrader.contracts import TradingPipelineSpec, load_pipeline
from apextrader.contracts.canary_spec import CanaryAnalysis
from apextrader.contracts.status import CanaryStatus
from apextrader.local import collect
from apextrader.local.canary_driver import LocalCanary, canary_record
from apextrader.local.monitor import LiveSnapshot, Monitor
from apextrader.local.options import UpOptions, effective_pipeline, write_pipeline
from apextrader.local.session import Session, open_session
from apextrader.local.view import make_progress, render
from apextrader.report.gonogo import with_analysis
from apextrader.report.run_report import write_run_report
from apextrader.report.run_summary import AgentRecord, OutageRecord, RunSummary, TrackRecord
from apextrader.report.tracks import gate_records

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Longest wait for in-flight events to drain through the pipeline before accounting.
DRAIN_TIMEOUT_S = 60.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class _Observed:
    """What the run loop saw, for the summary."""

    equity: dict[str, list[tuple[float, float]]]
    steady_since: float | None = None  # the start-up backlog (backfill, warm-up) cleared
    shed_at_steady: dict[str, int] = field(default_factory=dict)  # per agent, when it cleared
    rss_peak: dict[str, float] = field(default_factory=dict)
    rss_total_peak: float = 0.0


@dataclass(frozen=True)
class _Ended:
    """The pipeline after the stop: the final scrape and the drain."""

    last: LiveSnapshot
    ready_at_end: dict[str, bool]
    market_off: float
    drain_s: float


async def run_up(
    opts: UpOptions, console: Console, on_snapshot: Callable[[LiveSnapshot], None] | None = None
) -> RunSummary:
    tp = effective_pipeline(load_pipeline(opts.pipeline_file), opts)
    data_dir = opts.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pipeline_file = write_pipeline(tp, data_dir / "pipeline.yaml")
    session = await open_session(tp, data_dir, pipeline_file, console)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        await _start_agents(session, console)
        observed = await _watch(session, opts, console, stop, on_snapshot)
        ended = await _stop_and_drain(session, console)
        summary = await _account(session, observed, ended)
    finally:
        await session.close()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
    (data_dir / "summary.json").write_text(summary.model_dump_json(indent=2))
    if opts.report:
        write_run_report(summary, opts.report)
    return summary


async def _start_agents(session: Session, console: Console) -> None:
    """Every agent `/ready` in pipeline order, then the watchdog and the canary request watcher."""
    supervisor = session.supervisor
    with console.status("starting agents…") as status:
        for ap in supervisor.processes:
            status.update(f"starting {ap.key}…")
        await supervisor.start()
    console.print(
        f"[green]✓[/] {len(supervisor.processes)} agents ready: "
        + ", ".join(p.key for p in supervisor.processes)
    )
    session.write_runtime()
    session.background.append(asyncio.create_task(session.watchdog.run()))
    session.background.append(asyncio.create_task(_serve_requests(session.kv, session.canary)))


async def _watch(
    session: Session,
    opts: UpOptions,
    console: Console,
    stop: asyncio.Event,
    on_snapshot: Callable[[LiveSnapshot], None] | None,
) -> _Observed:
    """The run: once a second tick the canary, scrape the agents, record equity, refresh the view;
    until the duration is over or a signal arrives."""
    observed = _Observed(equity={t: [] for t in session.tracks})
    progress = make_progress()
    task = progress.add_task(f"{session.tp.name} paper trading", total=opts.duration_s or None)
    t0 = time.monotonic()
    deadline = None if opts.duration_s is None else t0 + opts.duration_s
    async with Monitor(session.supervisor, session.tracks) as monitor:
        with Live(
            render(None, progress, None, ""),
            console=console,
            refresh_per_second=4,
            transient=False,
            redirect_stdout=False,
        ) as live:
            if not opts.ui:
                live.stop()
            allowed = steady_backlog(session.tp.spec, session.topology)
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                status_now = await _bus_tolerant(session.canary.tick(), session.canary.status)
                snap = await monitor.poll()
                was_steady = observed.steady_since is not None
                await _note_steady(session, observed, allowed)
                if not was_steady:
                    observed.shed_at_steady = snap.shed  # shedding while catching up is expected
                session.write_runtime()  # pids change when agents restart
                _record_equity(session, observed, snap, status_now)
                if on_snapshot:
                    on_snapshot(snap)
                progress.update(task, completed=time.monotonic() - t0)
                if opts.ui:
                    weight = status_now.declared_weight if session.has_canary else None
                    live.update(render(snap, progress, weight, status_now.phase, status_now.last_analysis))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        observed.rss_peak, observed.rss_total_peak = monitor.rss_peak_mb, monitor.rss_total_peak_mb
    return observed


#: A consumer is caught up when what it has not acked is at most this much market data: one event
#: at a trickle, more at high rates, where messages are always in flight (prefetched, or waiting
#: for the PubAcks of their outputs) and "at most one" is never seen.
STEADY_LAG_S: Final = 0.05


def steady_backlog(spec: TradingPipelineSpec, topology: Topology) -> int:
    """Outstanding events (all consumers together) below which the start-up backlog is over."""
    markets = len(spec.symbols) * len(spec.exchanges)
    per_consumer = max(1, math.ceil(spec.source.snapshot_hz * markets * STEADY_LAG_S))
    return per_consumer * len(topology.consumers)


def shed_since(before: dict[str, int], now: dict[str, int]) -> dict[str, int]:
    """Snapshots each agent shed after `before` (a counter that went down restarted with its process)."""
    return {k: n - before.get(k, 0) if n >= before.get(k, 0) else n for k, n in now.items()}


async def _note_steady(session: Session, observed: _Observed, allowed: int) -> None:
    """Mark the first tick at which at most `allowed` events are outstanding, on every consumer (the
    decision agents' market data too: started last, they catch up last)."""
    session.topology = declare(session.canary.spec, session.tp.name)  # a promote retires consumers
    pending = collect.outstanding(session.js, session.topology, flow_only=False)
    left = await _bus_tolerant(pending, allowed + 1)
    if observed.steady_since is None and left <= allowed:
        observed.steady_since = time.time()


def _record_equity(session: Session, observed: _Observed, snap: LiveSnapshot, status: CanaryStatus) -> None:
    weights = track_weights(status.effective_weight, session.has_canary)
    capital = session.tp.spec.capital.amount
    for row in snap.tracks:
        share = capital * weights.get(row.track, 0) / 100
        observed.equity[row.track].append((time.time(), share + (row.pnl or 0.0)))


async def _stop_and_drain(session: Session, console: Console) -> _Ended:
    """Market data off, in-flight events drained, a last scrape, then every agent stopped."""
    supervisor = session.supervisor
    ready_at_end = {p.key: p.ready for p in supervisor.processes}
    console.print("stopping: market data off, draining in-flight events…")
    await supervisor.stop_one("market-scanner")
    market_off = time.time()
    drain_started = time.monotonic()
    left = await collect.drain(session.js, session.topology, DRAIN_TIMEOUT_S)
    drain_s = time.monotonic() - drain_started
    async with Monitor(supervisor, session.tracks) as final:
        last = await final.poll()
    # The event watcher still raises alerts without input (a source gone stale): stop it, then let
    # the risk managers take what it raised last.
    await supervisor.stop_one("event-watcher")
    left = await collect.drain(session.js, session.topology, DRAIN_TIMEOUT_S)
    if left:
        console.print(
            f"[yellow]{left} events still in flight after {DRAIN_TIMEOUT_S:.0f} s (counted as pending)[/]"
        )
    await supervisor.stop()
    return _Ended(last=last, ready_at_end=ready_at_end, market_off=market_off, drain_s=drain_s)


async def _account(session: Session, observed: _Observed, ended: _Ended) -> RunSummary:
    """JetStream's own accounting and the last scrape as `summary.json`, judged Go/No-Go."""
    spec, js, topology, last = session.tp.spec, session.js, session.topology, ended.last
    steady_since = observed.steady_since or ended.market_off
    summary = await _summarise(session, observed, ended)
    summary = summary.model_copy(
        update={
            "agents": [
                a.model_copy(update={"rss_peak_mb": observed.rss_peak.get(a.key)}) for a in summary.agents
            ],
            "rss_total_peak_mb": observed.rss_total_peak or None,
            "drain_s": ended.drain_s,
            "steady_window": None
            if observed.steady_since is None
            else (observed.steady_since, ended.market_off),
            "stage_latency": await collect.stage_latencies(js, topology, since=steady_since),
            "thresholds": thresholds(spec.canary.analysis if spec.canary else CanaryAnalysis()),
            "canary": canary_record(
                session.canary,
                next((r.position_notional for r in last.tracks if r.track == "canary"), None),
            ),
        }
    )
    return with_analysis(summary)  # the Go/No-Go judgement, recorded in summary.json


async def _summarise(session: Session, observed: _Observed, ended: _Ended) -> RunSummary:
    js, topology, canary, last = session.js, session.topology, session.canary, ended.last
    has_canary, capital = session.has_canary, session.tp.spec.capital.amount
    accounts, reasons = await collect.consumer_accounts(js, topology)
    market = await collect.market_record(js, topology, since=observed.steady_since or ended.market_off)
    fills, approved, duplicates = await collect.orders(js, topology, market.snapshot_ids)
    weights = track_weights(canary.status.effective_weight if has_canary else 0, has_canary)
    tracks = []
    for row in last.tracks:
        t_fills = [f for f in fills if f.track == row.track]
        buckets = _latency_buckets(last, row.track)
        expectancy = {
            s.labels["strategy"]: s.value
            for samples in last.samples.values()
            for s in samples
            if s.name == M.EXPECTANCY and s.labels.get("track") == row.track and "strategy" in s.labels
        }
        tracks.append(
            TrackRecord(
                track=row.track,
                capital=capital * weights.get(row.track, 0) / 100,
                weight_applied=row.weight_applied,
                approved=approved.get(row.track, 0),
                fills=len(t_fills),
                duplicate_fills=duplicates.get(row.track, 0),
                slippage_bps=[f.slippage_bps for f in t_fills],
                latency_p50_ms=row.latency_p50_ms,
                latency_p99_ms=row.latency_p99_ms,
                latency_buckets=buckets,
                margin_violations=row.margin_violations,
                expectancy=expectancy,
                equity=observed.equity.get(row.track, []),
            )
        )
    agents = [
        AgentRecord(
            key=p.key,
            restarts=p.restarts,
            ready_at_end=ended.ready_at_end.get(p.key, False),
            outages=[
                OutageRecord(key=o.key, started=o.started, ended=o.ended, exit_code=o.exit_code)
                for o in p.outages
            ],
        )
        for p in session.supervisor.processes
    ]
    return RunSummary(
        pipeline=topology.pipeline,
        source=session.tp.spec.source.kind,
        started_at=session.started,
        ended_at=time.time(),
        bus_downtime_s=session.watchdog.downtime_s,
        agents=agents,
        consumers=accounts,
        dlq_total=sum(reasons.values()),
        dlq_by_reason=dict(reasons),
        published=await collect.published_counts(js, topology),
        discarded=await collect.discarded_counts(js, topology),
        shed=last.shed,
        shed_steady=shed_since(observed.shed_at_steady, last.shed) if observed.steady_since else {},
        tracks=tracks,
        fills=fills,
        gate=gate_records(s for samples in last.samples.values() for s in samples),
        prices=market.prices,
        weight_changes=list(canary.history),
        steady_snapshots=market.live_since,
    )


async def _bus_tolerant(call: Awaitable[T], fallback: T) -> T:
    """A bus request of the run loop; while a server is down or a leader is being elected it may time
    out: the loop keeps going with `fallback` (the watchdog restarts servers, the next tick retries)."""
    try:
        return await call
    except (TimeoutError, nats.errors.Error) as exc:
        log.info("bus request failed (%s); retrying next tick", exc)
        return fallback


async def _serve_requests(kv: KV, canary: LocalCanary) -> None:
    """Apply `apex canary ... --local` requests the moment they land, not at the next view refresh."""
    while True:
        try:
            async for value in kv.watch(KV_CANARY_REQUEST):
                if value:
                    await _bus_tolerant(canary.tick(), canary.status)
        except (TimeoutError, nats.errors.Error) as exc:  # the watch died with its server: watch again
            log.info("canary request watch ended (%s); watching again", exc)
            await asyncio.sleep(0.5)


def _latency_buckets(snap: LiveSnapshot, track: str) -> list[tuple[float, float]]:
    acc: dict[float, float] = {}
    for samples in snap.samples.values():
        for s in samples:
            if s.name == f"{M.PIPELINE_LATENCY}_bucket" and s.labels.get("track") == track:
                le = float(s.labels["le"])
                acc[le] = acc.get(le, 0.0) + s.value
    return sorted(acc.items())
