"""Where the analysis gets its numbers: agents' `/metrics` pages or a Prometheus HTTP API."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from apextrader.canary.analysis import (
    CHECKS,
    AnalysisTrack,
    CheckName,
    TrackCounters,
    activity_promql,
    judge,
    parse_metrics,
    promql,
    window_values,
)
from apextrader.contracts.canary_spec import CanaryAnalysis
from apextrader.contracts.status import AnalysisRun

_TIMEOUT = aiohttp.ClientTimeout(total=5)


async def scrape(urls: Sequence[str]) -> list[str]:
    """Fetch every `/metrics` page that answers; an agent that is down contributes no data."""
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:

        async def one(url: str) -> str | None:
            try:
                async with session.get(url) as resp:
                    return await resp.text() if resp.status == 200 else None
            except (aiohttp.ClientError, TimeoutError):
                return None

        pages = await asyncio.gather(*(one(u) for u in urls))
    return [p for p in pages if p is not None]


async def _instant(session: aiohttp.ClientSession, base: str, expr: str) -> float | None:
    """One instant query; an empty vector or NaN is no data."""
    async with session.get(f"{base.rstrip('/')}/api/v1/query", params={"query": expr}) as resp:
        resp.raise_for_status()
        body = await resp.json()
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus: {body.get('error', 'query failed')}")
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        value = float(result[1])
    elif not result:
        return None
    else:
        value = float(result[0]["value"][1])
    return None if math.isnan(value) or math.isinf(value) else value


async def prometheus_values(base_url: str, track: str, interval: str) -> dict[CheckName, float | None]:
    """The five check values for a track by PromQL. Error counters that have no series count as 0
    only when the track handled events in the interval (otherwise: no data)."""
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
        values = {c: await _instant(session, base_url, promql(c, track, interval)) for c in CHECKS}
        activity = await _instant(session, base_url, activity_promql(track, interval))
    for c in ("maxMarginViolations", "maxDlqLoss"):
        if values[c] is None and activity:
            values[c] = 0.0
    return values


@dataclass
class AnalysisMemory:
    """Per pipeline, kept by the runner between analyses: the previous scrape, to difference counters."""

    previous: dict[str, TrackCounters] | None = None


async def run_analysis(
    spec: CanaryAnalysis,
    urls: Sequence[str],
    memory: AnalysisMemory,
    now: datetime,
    track: AnalysisTrack = "canary",
) -> AnalysisRun:
    """One analysis of `track`, by PromQL when `prometheusUrl` is set, else from the agents' pages
    (operator and `apex up` alike). The first scrape is a baseline: its verdict is Inconclusive."""
    if spec.prometheus_url:
        return judge(spec, await prometheus_values(spec.prometheus_url, track, spec.interval), now, track)
    current = parse_metrics(await scrape(urls))
    previous, memory.previous = memory.previous, current
    if previous is None:
        # counters since process start are not "the interval"
        return judge(spec, dict.fromkeys(window_values(None, None)), now, track)
    return judge(spec, window_values(current.get(track), previous.get(track)), now, track)
