"""Entry point: registers every command group on one typer app."""

from __future__ import annotations

import os

import typer

from apextrader import __version__
from apextrader.cli import agents as agents_cli
from apextrader.cli import backtest as backtest_cli
from apextrader.cli import canary as canary_cli
from apextrader.cli import dlq as dlq_cli
from apextrader.cli.crds import crds
from apextrader.cli.data import data_app
from apextrader.cli.features import features
from apextrader.cli.operator import operator
from apextrader.cli.up import up
from apextrader.cli.validate import validate

app = typer.Typer(
    name="apex",
    help="ApexTrader: a seven-agent crypto trading pipeline on NATS JetStream.\n\n"
    "Start with [bold]apex up manifests/pipeline.yaml[/] (everything on this machine, paper trading).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"apex {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    if debug:
        os.environ["APEX_DEBUG"] = "1"


app.command("validate")(validate)
app.command("up")(up)
app.command("crds")(crds)
app.command("agent")(agents_cli.agent)
app.add_typer(data_app, name="data")
app.command("features")(features)
app.command("backtest")(backtest_cli.backtest)
app.command("operator")(operator)
app.add_typer(canary_cli.app, name="canary")
app.add_typer(dlq_cli.app, name="dlq")


def main() -> None:
    app()
