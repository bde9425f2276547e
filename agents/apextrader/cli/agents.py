"""`apex agent ID`: run one agent (what a container runs). Agent classes are imported lazily from
this map, so the CLI loads only the agent it runs."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Final

import typer
from pydantic import ValidationError

from apextrader.cli.errors import UsageError, friendly
from apextrader.contracts.names import AGENT_IDS, DECISION_AGENTS, AgentId, Track
from apextrader.runtime.agent import Agent

#: agent id -> "module:Class"
AGENT_CLASSES: Final[dict[AgentId, str]] = {
    "market-scanner": "apextrader.market.agent:MarketScannerAgent",
    "feature-engineer": "apextrader.features.agent:FeatureEngineerAgent",
    "strategy-builder": "apextrader.strategy.agent:StrategyBuilderAgent",
    "backtester": "apextrader.backtest.agent:BacktesterAgent",
    "event-watcher": "apextrader.watcher.agent:EventWatcherAgent",
    "risk-manager": "apextrader.risk.agent:RiskManagerAgent",
    "execution": "apextrader.execution.agent:ExecutionAgent",
}

#: Agents that compile the quant kernels with numba (`quant.jit`); the others run them as plain
#: Python, bit-identical. None does: numba + LLVM cost the backtester ~150 MB of RSS, while its live
#: walk-forward (600 bars) takes ~12 ms per record in plain Python (docs/performance.md, "Memory").
#: `APEX_JIT=1` in an agent's environment still compiles, e.g. for much longer walk-forward windows.
JIT_AGENTS: Final[frozenset[AgentId]] = frozenset()


def load_agent_class(agent_id: str) -> type[Agent]:
    """The class registered for `agent_id`, imported now; UsageError with one line otherwise."""
    target = AGENT_CLASSES.get(agent_id)  # type: ignore[call-overload]
    if target is None:
        raise UsageError(f"unknown agent {agent_id!r}; one of: {', '.join(AGENT_IDS)}")
    os.environ.setdefault("APEX_JIT", "1" if agent_id in JIT_AGENTS else "0")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(
                f"agent {agent_id!r} is not implemented yet ({module_name} does not exist)"
            ) from None
        raise
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise UsageError(f"agent {agent_id!r}: {target} is not an Agent subclass")
    return cls


def default_track(agent_id: str) -> Track:
    return "stable" if agent_id in DECISION_AGENTS else "shared"


@friendly
def agent(
    agent_id: str = typer.Argument(..., metavar="ID", help=f"One of: {', '.join(AGENT_IDS)}."),
    track: str = typer.Option(None, "--track", help="stable | canary (decision agents); shared otherwise."),
    pipeline: Path = typer.Option(
        None,
        "--pipeline",
        help="TradingPipeline YAML (default: $APEX_PIPELINE_FILE).",
        envvar="APEX_PIPELINE_FILE",
    ),
    nats_url: str = typer.Option(
        None, "--nats", help="NATS URL (default: $APEX_NATS_URL or nats://127.0.0.1:4222)."
    ),
    http_port: int = typer.Option(
        None, "--http-port", help="Port of /health /ready /metrics (default 8080)."
    ),
) -> None:
    """Run one agent until SIGTERM.

    Example: [bold]apex agent risk-manager --track canary --pipeline manifests/pipeline.yaml --nats nats://127.0.0.1:4222[/]
    """
    from apextrader.runtime import AgentSettings, run_agent

    cls = load_agent_class(agent_id)
    chosen = track or default_track(agent_id)
    if chosen not in ("stable", "canary", "shared"):
        raise UsageError(f"--track must be stable, canary or shared, not {chosen!r}")
    if (chosen == "shared") != (agent_id not in DECISION_AGENTS):
        allowed = "stable or canary" if agent_id in DECISION_AGENTS else "shared"
        raise UsageError(f"{agent_id} runs on track {allowed}, not {chosen!r}")
    overrides: dict[str, object] = {"agent": agent_id, "track": chosen}
    if pipeline is not None:
        overrides["pipeline_file"] = pipeline
    if nats_url is not None:
        overrides["nats_url"] = nats_url
    if http_port is not None:
        overrides["http_port"] = http_port
    try:
        settings = AgentSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    raise typer.Exit(run_agent(cls, settings))
