"""The `apex` command line (typer + rich). Only the CLI composes packages from every layer."""

from apextrader.cli.main import app, main

__all__ = ["app", "main"]
