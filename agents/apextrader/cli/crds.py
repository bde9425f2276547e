"""`apex crds`: print the TradingPipeline CRD generated from the spec models."""

from __future__ import annotations

import typer

from apextrader.cli.errors import friendly


@friendly
def crds() -> None:
    """Print the generated TradingPipeline CustomResourceDefinition (YAML).

    Example: [bold]apex crds | kubectl apply -f -[/]
    """
    from apextrader_operator.crd import crd_yaml  # the operator package is optional at import time

    typer.echo(crd_yaml(), nl=False)
