"""The canary on the cluster: run the analysis (agents' /metrics via their Services, or PromQL),
step the pure state machine, write KV `canary.weight`/`canary.state`, read back `applied.*`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from apextrader.bus.topology import KV_CANARY_STATE, KV_CANARY_WEIGHT, deployment_name
from apextrader.canary import advance, analysis_due, kv_state
from apextrader.canary.export import export_analysis, export_canary_metrics
from apextrader.canary.machine import latest_echo, with_positions
from apextrader.canary.sources import AnalysisMemory
from apextrader.canary.sources import run_analysis as analyse
from apextrader.contracts.names import AGENT_IDS, agent_tracks
from apextrader.contracts.pipeline import TradingPipeline
from apextrader.contracts.status import AnalysisRun, CanaryStatus
from apextrader_operator.builders.labels import HTTP_PORT
from apextrader_operator.natsbus import PipelineBus

#: The agent whose echo is the applied weight of a track (it sizes positions from it).
WEIGHT_AGENT = "risk-manager"

__all__ = ["AnalysisMemory", "export_canary_metrics", "run_analysis", "step_canary"]


def metrics_urls(tp: TradingPipeline) -> list[str]:
    """Every agent Service's /metrics in the pipeline's namespace."""
    ns = tp.metadata.namespace or "default"
    has_canary = tp.spec.canary is not None
    return [
        f"http://{deployment_name(tp.name, a, t)}.{ns}.svc:{HTTP_PORT}/metrics"
        for a in AGENT_IDS
        for t in agent_tracks(a, has_canary)
    ]


MetricsUrls = Callable[[TradingPipeline], list[str]]


async def run_analysis(
    tp: TradingPipeline, memory: AnalysisMemory, now: datetime, urls: MetricsUrls = metrics_urls
) -> AnalysisRun:
    assert tp.spec.canary is not None
    return await analyse(tp.spec.canary.analysis, urls(tp), memory, now)


async def step_canary(
    tp: TradingPipeline,
    previous: CanaryStatus,
    now: datetime,
    bus: PipelineBus | None,
    memory: AnalysisMemory,
    analyse: bool,
    urls: MetricsUrls = metrics_urls,
) -> CanaryStatus:
    """One step of the state machine; with a bus, publish the effective weight and read the echoes."""
    canary = tp.spec.canary
    run = None
    if analyse and canary is not None and analysis_due(canary, previous, now):
        run = await run_analysis(tp, memory, now, urls)
        export_analysis(tp.name, run)
    status = advance(canary, previous, now, run)
    export_canary_metrics(tp.name, status)
    if bus is not None:
        await bus.put_json(KV_CANARY_WEIGHT, status.effective_weight)
        await bus.put_json(KV_CANARY_STATE, kv_state(status.phase))
        status.applied_weight = await applied_weights(bus, canary is not None)
        if canary is not None:
            status = with_positions(status, await bus.entries(f"applied.{WEIGHT_AGENT}.canary."))
    return status


async def applied_weights(bus: PipelineBus, has_canary: bool) -> dict[str, int | None]:
    """Per track, the weight its risk manager last echoed (`applied.risk-manager.<track>.<instance>`);
    a track that has not echoed yet is absent."""
    out: dict[str, int | None] = {}
    for track in ("stable", "canary") if has_canary else ("stable",):
        entries = await bus.entries(f"applied.{WEIGHT_AGENT}.{track}.")
        latest = latest_echo(entries)
        weight = latest.get("weight") if isinstance(latest, dict) else latest
        if isinstance(weight, int | float):
            out[track] = int(weight)
    return out
