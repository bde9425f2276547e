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
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
from nats.js import JetStreamContext
from rich.console import Console
from rich.live import Live

from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.kv import KV
from apextrader.bus.metrics import MetricName as M
from apextrader.bus.topology import KV_CANARY_REQUEST, KV_HALT, Topology, declare
from apextrader.canary.analysis import thresholds
from apextrader.canary.weights import track_weights
from apextrader.contracts import AGENT_IDS, agent_tracks, load_pipeline
from apextrader.contracts.canary_spec import CanaryAnalysis
from apextrader.local import collect
from apextrader.local.canary_driver import LocalCanary, attach, canary_record, serve_metrics
from apextrader.local.localbus import ServerWatchdog, start_local_bus
from apextrader.local.monitor import LiveSnapshot, Monitor
from apextrader.local.options import UpOptions, effective_pipeline, write_pipeline
from apextrader.local.supervisor import Supervisor
from apextrader.local.view import make_progress, render
from apextrader.report.gonogo import with_analysis
from apextrader.report.run_report import write_run_report
from apextrader.report.run_summary import AgentRecord, OutageRecord, RunSummary, TrackRecord
from apextrader.report.tracks import gate_records

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Longest wait for in-flight events to drain through the pipeline before accounting.
DRAIN_TIMEOUT_S = 60.0


async def run_up(
    opts: UpOptions, console: Console, on_snapshot: Callable[[LiveSnapshot], None] | None = None
) -> RunSummary:
    user = load_pipeline(opts.pipeline_file)
    tp = effective_pipeline(user, opts)
    name, spec = tp.name, tp.spec
    data_dir = opts.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pipeline_file = write_pipeline(tp, data_dir / "pipeline.yaml")
    has_canary = spec.canary is not None
    tracks = ["stable", "canary"] if has_canary else ["stable"]
    units = [(a, t) for a in AGENT_IDS for t in agent_tracks(a, has_canary)]

    bus, logins = await asyncio.to_thread(
        start_local_bus, tp, data_dir, spec.bus.managed.replicas if spec.bus.managed else 1
    )
    admin_file = logins.write_admin(data_dir)
    all_urls = ",".join(bus.urls)
    console.print(f"[green]✓[/] {len(bus.servers)} nats-server(s) with JetStream on {all_urls}")
    nc = await connect(all_urls, name="apex-up", **logins.admin_options())
    js = nc.jetstream()
    topology = declare(spec, name)
    await ensure_topology(js, topology)
    kv = KV(await js.key_value(topology.kv_bucket))
    await kv.put_json(KV_HALT, False)
    canary = LocalCanary(kv=kv, spec=spec)
    await canary.tick()
    console.print(
        f"[green]✓[/] {len(topology.streams)} streams, {len(topology.consumers)} consumers, KV {topology.kv_bucket}"
    )

    supervisor = Supervisor(
        units,
        pipeline_file=pipeline_file,
        nats_url=all_urls,
        log_dir=data_dir / "logs",
        agent_env=logins.agent_env,
    )
    attach(canary, supervisor, tp, js)
    metrics_port = serve_metrics()  # apex_canary_* of this supervisor
    runtime_file = data_dir / "runtime.json"
    started = time.time()
    watchdog = ServerWatchdog(bus)
    watchdog_task: asyncio.Task[None] | None = None
    request_task: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    equity: dict[str, list[tuple[float, float]]] = {t: [] for t in tracks}
    steady_since: float | None = None

    def write_runtime() -> None:  # where `apex canary --local` and the tests find the processes
        info = {
            "pipeline": name,
            "nats_url": bus.url,
            "nats_pid": bus.pids[0],
            "nats_urls": bus.urls,
            "nats_pids": bus.pids,
            "nats_store_dirs": [str(srv.store_dir) for srv in bus.servers],
            "nats_admin": str(admin_file),
            "agents": supervisor.runtime_info(),
            "supervisor": {"http_port": metrics_port},
        }
        partial = runtime_file.with_suffix(".json.tmp")  # readers never see a half-written file
        partial.write_text(json.dumps(info, indent=2))
        partial.replace(runtime_file)

    try:
        with console.status("starting agents…") as status:
            for ap in supervisor.processes:
                status.update(f"starting {ap.key}…")
            await supervisor.start()
        console.print(
            f"[green]✓[/] {len(units)} agents ready: " + ", ".join(p.key for p in supervisor.processes)
        )
        write_runtime()
        watchdog_task = asyncio.create_task(watchdog.run())
        request_task = asyncio.create_task(_serve_requests(kv, canary))
        progress = make_progress()
        task = progress.add_task(f"{name} paper trading", total=opts.duration_s or None)
        t0 = time.monotonic()
        deadline = None if opts.duration_s is None else t0 + opts.duration_s
        async with Monitor(supervisor, tracks) as monitor:
            with Live(
                render(None, progress, None, ""),
                console=console,
                refresh_per_second=4,
                transient=False,
                redirect_stdout=False,
            ) as live:
                if not opts.ui:
                    live.stop()
                flow_consumers = sum(c.deliver_policy == "all" for c in topology.consumers)
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    status_now = await _bus_tolerant(canary.tick(), canary.status)
                    snap = await monitor.poll()
                    topology = declare(canary.spec, name)  # a promote retires the canary's consumers
                    left = await _bus_tolerant(collect.outstanding(js, topology), flow_consumers + 1)
                    if steady_since is None and left <= flow_consumers:
                        steady_since = time.time()  # start-up backlog (backfill, warm-up) cleared
                    write_runtime()  # pids change when agents restart
                    weights = track_weights(status_now.effective_weight, has_canary)
                    for row in snap.tracks:
                        equity[row.track].append(
                            (
                                time.time(),
                                spec.capital.amount * weights.get(row.track, 0) / 100 + (row.pnl or 0.0),
                            )
                        )
                    if on_snapshot:
                        on_snapshot(snap)
                    progress.update(task, completed=time.monotonic() - t0)
                    if opts.ui:
                        live.update(
                            render(
                                snap,
                                progress,
                                status_now.declared_weight if has_canary else None,
                                status_now.phase,
                                status_now.last_analysis,
                            )
                        )
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
            rss_peak, rss_total_peak = monitor.rss_peak_mb, monitor.rss_total_peak_mb
        ready_at_end = {p.key: p.ready for p in supervisor.processes}
        console.print("stopping: market data off, draining in-flight events…")
        await supervisor.stop_one("market-scanner")
        market_off = time.time()
        drain_started = time.monotonic()
        left = await collect.drain(js, topology, DRAIN_TIMEOUT_S)
        drain_s = time.monotonic() - drain_started
        if left:
            console.print(
                f"[yellow]{left} events still in flight after {DRAIN_TIMEOUT_S:.0f} s (counted as pending)[/]"
            )
        async with Monitor(supervisor, tracks) as final:
            last = await final.poll()
        await supervisor.stop()
        summary = await _summarise(
            js,
            topology,
            supervisor,
            last,
            ready_at_end,
            equity,
            canary,
            watchdog,
            started,
            spec.capital.amount,
            tp.spec.source.kind,
            has_canary,
            steady_since or market_off,
        )
        summary = summary.model_copy(
            update={
                "agents": [a.model_copy(update={"rss_peak_mb": rss_peak.get(a.key)}) for a in summary.agents],
                "rss_total_peak_mb": rss_total_peak or None,
                "drain_s": drain_s,
                "steady_window": None if steady_since is None else (steady_since, market_off),
                "stage_latency": await collect.stage_latencies(
                    js, topology, since=steady_since or market_off
                ),
                "thresholds": thresholds(spec.canary.analysis if spec.canary else CanaryAnalysis()),
                "canary": canary_record(
                    canary, next((r.position_notional for r in last.tracks if r.track == "canary"), None)
                ),
            }
        )
        summary = with_analysis(summary)  # the Go/No-Go judgement, recorded in summary.json
    finally:
        background = [t for t in (watchdog_task, request_task) if t is not None]
        for t in background:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)  # ended before the connection closes
        await supervisor.stop()
        with contextlib.suppress(Exception):
            await nc.close()
        bus.stop()
        runtime_file.unlink(missing_ok=True)
        admin_file.unlink(missing_ok=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    (data_dir / "summary.json").write_text(summary.model_dump_json(indent=2))
    if opts.report:
        write_run_report(summary, opts.report)
    return summary


async def _summarise(
    js: JetStreamContext,
    topology: Topology,
    supervisor: Supervisor,
    last: LiveSnapshot,
    ready_at_end: dict[str, bool],
    equity: dict[str, list[tuple[float, float]]],
    canary: LocalCanary,
    watchdog: ServerWatchdog,
    started: float,
    capital: float,
    source: str,
    has_canary: bool,
    steady_since: float,
) -> RunSummary:
    accounts, reasons = await collect.consumer_accounts(js, topology)
    market = await collect.market_record(js, topology, since=steady_since)
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
                equity=equity.get(row.track, []),
            )
        )
    agents = [
        AgentRecord(
            key=p.key,
            restarts=p.restarts,
            ready_at_end=ready_at_end.get(p.key, False),
            outages=[
                OutageRecord(key=o.key, started=o.started, ended=o.ended, exit_code=o.exit_code)
                for o in p.outages
            ],
        )
        for p in supervisor.processes
    ]
    return RunSummary(
        pipeline=topology.pipeline,
        source=source,
        started_at=started,
        ended_at=time.time(),
        bus_downtime_s=watchdog.downtime_s,
        agents=agents,
        consumers=accounts,
        dlq_total=sum(reasons.values()),
        dlq_by_reason=dict(reasons),
        published=await collect.published_counts(js, topology),
        discarded=await collect.discarded_counts(js, topology),
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
