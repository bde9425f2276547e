"""`apex up FILE`: the whole pipeline on this machine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from apextrader.cli.errors import console, friendly
from apextrader.contracts.units import parse_duration


@friendly
def up(
    file: Path = typer.Argument(
        ..., help="A TradingPipeline YAML (the same file the operator reads).", metavar="FILE"
    ),
    duration: str | None = typer.Option(
        None, "--duration", "-d", help="Stop after this long (30s, 5m, 1h); default: until Ctrl-C."
    ),
    source: str | None = typer.Option(
        None, "--source", help="Override spec.source: synthetic, replay:PATH or ccxt."
    ),
    speed: float | None = typer.Option(
        None, "--speed", help="Market seconds per wall-clock second for synthetic/replay data."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="JetStream store, logs, runtime.json and summary.json (default .apex/<pipeline name>).",
    ),
    report: Path | None = typer.Option(None, "--report", help="Write the HTML report here at the end."),
    no_ui: bool = typer.Option(False, "--no-ui", help="No live terminal view (for CI and logs)."),
    bus_replicas: int | None = typer.Option(
        None,
        "--bus-replicas",
        help="1, or 3 for a local 3-server NATS cluster with R3 streams (default: spec.bus.managed.replicas).",
    ),
) -> None:
    """Run the whole TradingPipeline here: embedded NATS JetStream, seven agents as processes, paper trading.

    Example: [bold]apex up manifests/pipeline.yaml --duration 60s --report report.html[/]

    [bold]--bus-replicas 3[/] runs three nats-servers as one cluster (streams with 3 replicas): trading
    goes on with one of them gone (docs/bus.md).

    While it runs, [bold]apex canary set-weight btc-perp 25 --local[/] moves capital to the canary track
    without a restart, and [bold]apex dlq ls --pipeline btc-perp[/] lists dead letters.
    """
    from apextrader.cli.errors import UsageError
    from apextrader.contracts import load_pipeline
    from apextrader.local.options import UpOptions, default_data_dir
    from apextrader.local.up import run_up
    from apextrader.report.gonogo import evaluate

    if bus_replicas not in (None, 1, 3):
        raise UsageError("--bus-replicas: 1 or 3", 2)
    seconds = parse_duration(duration).total_seconds() if duration else None
    opts = UpOptions(
        pipeline_file=file,
        data_dir=data_dir or default_data_dir(load_pipeline(file).name),
        duration_s=seconds,
        source=source,
        speed=speed,
        report=report,
        ui=not no_ui,
        bus_replicas=bus_replicas,
    )
    summary = asyncio.run(run_up(opts, console))
    for row in evaluate(summary):
        color = {"PASS": "green", "FAIL": "red"}.get(row.verdict, "yellow")
        console.print(f"[{color}]{row.verdict:>4}[/] {row.criterion}: {row.measured}", highlight=False)
    fills = sum(t.fills for t in summary.tracks)
    console.print(f"{fills} fills on " + ", ".join(f"{t.track} {t.fills}" for t in summary.tracks))
    if report:
        console.print(f"report: [bold]{report}[/]")
