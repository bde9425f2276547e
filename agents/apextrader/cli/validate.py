"""`apex validate FILE`."""

from __future__ import annotations

from pathlib import Path

import typer

from apextrader.cli.errors import console, err_console, friendly
from apextrader.contracts import PipelineError, load_pipeline, track_spec


@friendly
def validate(
    file: Path = typer.Argument(..., help="A TradingPipeline YAML file.", metavar="FILE"),
) -> None:
    """Check a TradingPipeline file; print each error naming its field, or [green]ok[/].

    Example: [bold]apex validate manifests/pipeline.yaml[/]
    """
    try:
        pipeline = load_pipeline(file)
        track_spec(pipeline.spec, "canary")
    except PipelineError as exc:
        for line in exc.errors:
            err_console.print(f"[red]{file}:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print("ok")
