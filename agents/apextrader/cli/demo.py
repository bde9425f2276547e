"""`apex demo`: a ~15 s demonstration of the bus (until `apex up` runs the whole pipeline)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from apextrader.cli.errors import console, friendly
from apextrader.contracts import load_pipeline


@friendly
def demo(
    pipeline: Path = typer.Argument(
        Path("manifests/pipeline.yaml"), metavar="[FILE]", help="TradingPipeline YAML."
    ),
    duration: float = typer.Option(15.0, "--duration", min=1, help="Seconds to run."),
    rate: float = typer.Option(50.0, "--rate", min=1, max=2000, help="Snapshots per second."),
) -> None:
    """Events flowing over an embedded NATS JetStream through two hops, one malformed event into the DLQ.

    Example: [bold]apex demo --duration 15[/]
    """
    from apextrader.local.demo import run_demo

    asyncio.run(run_demo(load_pipeline(pipeline), duration=duration, rate=rate, console=console))
