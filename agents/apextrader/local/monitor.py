"""Polls every agent's `/metrics` and `/ready` and condenses them into what the live view and the report
show: per-agent health, events/s, DLQ count and shed snapshots; per-track latency, fills, positions, PnL and weight."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

import aiohttp
import psutil

from apextrader.bus.metrics import MetricName as M
from apextrader.canary.analysis import histogram_quantile as quantile_of_buckets
from apextrader.local.scrape import Sample, bucket_counts, increase, parse_samples, quantile_of, total
from apextrader.local.supervisor import Supervisor

#: The live view's latency percentiles cover this many recent seconds.
LATENCY_WINDOW_S = 30.0


@dataclass(frozen=True)
class AgentRow:
    key: str
    ready: bool
    pid: int | None
    restarts: int
    handled: float
    events_per_s: float
    dlq: float
    handler_p99_ms: float | None
    rss_mb: float | None = None
    #: Forming-bar snapshots shed since the process started (None: the agent consumes nothing).
    shed: float | None = None


@dataclass(frozen=True)
class TrackRow:
    track: str
    weight_applied: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    fills: float
    approved: float
    slippage_avg_bps: float | None
    position_notional: float
    pnl: float | None
    margin_violations: float


@dataclass(frozen=True)
class LiveSnapshot:
    at: float
    agents: list[AgentRow]
    tracks: list[TrackRow]
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    @property
    def dlq_total(self) -> float:
        return sum(a.dlq for a in self.agents)

    @property
    def shed(self) -> dict[str, int]:
        """Per agent process key, the snapshots its consumers shed (`summary.json` `shed`)."""
        return {a.key: int(a.shed) for a in self.agents if a.shed is not None}


def shed_of(samples: list[Sample]) -> float | None:
    """`apex_snapshots_shed_total` of one agent's scrape; None when it does not export it."""
    values = [s.value for s in samples if s.name == M.SNAPSHOTS_SHED]
    return sum(values) if values else None


class Monitor:
    def __init__(self, supervisor: Supervisor, tracks: list[str]) -> None:
        self.supervisor = supervisor
        self.tracks = tracks
        self._last: dict[str, tuple[float, float]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.latest: LiveSnapshot | None = None
        #: Highest RSS per agent key, and of all agents together, over every poll (MB).
        self.rss_peak_mb: dict[str, float] = {}
        self.rss_total_peak_mb = 0.0
        #: (time, per-track latency bucket counts) of recent polls: the view's latency is over a window.
        self._latency: deque[tuple[float, dict[str, dict[float, float]]]] = deque()

    async def __aenter__(self) -> Monitor:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _scrape(self, port: int) -> list[Sample]:
        assert self._session is not None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with self._session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                if resp.status == 200:
                    return parse_samples(await resp.text())
        return []

    async def poll(self) -> LiveSnapshot:
        procs = self.supervisor.processes
        scraped = await asyncio.gather(*(self._scrape(p.http_port) for p in procs))
        now = time.monotonic()
        by_key = {p.key: s for p, s in zip(procs, scraped, strict=True)}
        agents = []
        rss_total = 0.0
        for p, samples in zip(procs, scraped, strict=True):
            handled = total(samples, M.EVENTS, outcome="acked")
            last_t, last_n = self._last.get(p.key, (now, handled))
            rate = (handled - last_n) / (now - last_t) if now > last_t and handled >= last_n else 0.0
            self._last[p.key] = (now, handled)
            p99 = quantile_of(0.99, samples, M.HANDLER_SECONDS)
            rss = _rss_mb(p.pid)
            if rss is not None:
                rss_total += rss
                self.rss_peak_mb[p.key] = max(rss, self.rss_peak_mb.get(p.key, 0.0))
            agents.append(
                AgentRow(
                    key=p.key,
                    ready=p.ready,
                    pid=p.pid,
                    restarts=p.restarts,
                    handled=handled,
                    events_per_s=rate,
                    dlq=total(samples, M.DLQ),
                    handler_p99_ms=None if p99 is None else p99 * 1000,
                    rss_mb=rss,
                    shed=shed_of(samples),
                )
            )
        self.rss_total_peak_mb = max(self.rss_total_peak_mb, rss_total)
        everything = [s for samples in scraped for s in samples]
        recent = self._recent_latency(now, everything)
        tracks = [self._track_row(t, everything, recent.get(t, {})) for t in self.tracks]
        self.latest = LiveSnapshot(at=time.time(), agents=agents, tracks=tracks, samples=by_key)
        return self.latest

    def _recent_latency(self, now: float, samples: list[Sample]) -> dict[str, dict[float, float]]:
        """Per track, the pipeline-latency buckets gained over the last `LATENCY_WINDOW_S` (like
        `increase(...[30s])`): the view shows latency now, not since start-up."""
        counts = {t: bucket_counts(samples, M.PIPELINE_LATENCY, track=t) for t in self.tracks}
        self._latency.append((now, counts))
        while len(self._latency) > 2 and self._latency[1][0] <= now - LATENCY_WINDOW_S:
            self._latency.popleft()
        base = self._latency[0][1] if len(self._latency) > 1 else {}
        return {t: increase(c, base.get(t, {})) for t, c in counts.items()}

    @staticmethod
    def _track_row(track: str, samples: list[Sample], recent: dict[float, float]) -> TrackRow:
        def ms(q: float) -> float | None:
            v = quantile_of_buckets(q, recent)
            return None if v is None else v * 1000

        slip_n = total(samples, f"{M.SLIPPAGE_BPS}_count", track=track)
        weight = [
            s.value for s in samples if s.name == M.CANARY_WEIGHT_APPLIED and s.labels.get("track") == track
        ]
        pnl = [s.value for s in samples if s.name == M.PNL and s.labels.get("track") == track]
        return TrackRow(
            track=track,
            weight_applied=weight[0] if weight else None,
            latency_p50_ms=ms(0.5),
            latency_p99_ms=ms(0.99),
            fills=total(samples, M.ORDERS, track=track, state="filled")
            + total(samples, M.ORDERS, track=track, state="partially_filled"),
            approved=total(samples, M.ORDERS, track=track, state="approved"),
            slippage_avg_bps=total(samples, f"{M.SLIPPAGE_BPS}_sum", track=track) / slip_n
            if slip_n
            else None,
            position_notional=sum(
                abs(s.value)
                for s in samples
                if s.name == M.POSITION_NOTIONAL and s.labels.get("track") == track and "symbol" in s.labels
            ),
            pnl=sum(pnl) if pnl else None,
            margin_violations=total(samples, M.MARGIN_VIOLATIONS, track=track),
        )


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).memory_info().rss) / 1e6
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
