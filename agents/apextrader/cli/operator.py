"""`apex operator`: run the kopf operator (`apextrader_operator.handlers.run`) with the settings
read from the environment once (`OperatorConfig.from_env`)."""

from __future__ import annotations

import typer

from apextrader.cli.errors import UsageError, friendly


@friendly
def operator(
    namespace: list[str] = typer.Option(
        [], "--namespace", "-n", help="Watch this namespace (repeatable). Default: all namespaces."
    ),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Watch every namespace."),
    liveness: str = typer.Option(
        "http://0.0.0.0:8080/healthz", "--liveness", help="kopf's liveness endpoint (empty: none)."
    ),
    metrics_port: int = typer.Option(
        8081, "--metrics-port", envvar="APEX_METRICS_PORT", help="Port of /metrics (apex_canary_*; 0: none)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the TradingPipeline operator against the cluster in your kubeconfig (or in-cluster).

    Example: [bold]apex operator --namespace trading[/]

    Environment: APEX_AGENT_IMAGE (agents' image when a spec names none), APEX_OPERATOR_INTERVAL
    (seconds between canary/status ticks, default 5), APEX_OPERATOR_NATS_URL (reach the bus through
    a port-forward when running outside the cluster); all settings in docs/operator.md.
    """
    if namespace and all_namespaces:
        raise UsageError("give --namespace or --all-namespaces, not both")
    # heavy imports: only when the operator really runs
    from apextrader_operator.handlers import run
    from apextrader_operator.settings import OperatorConfig

    config = OperatorConfig.from_env()  # the one read of the operator's settings
    if metrics_port:
        from prometheus_client import start_http_server

        from apextrader.bus.metrics import REGISTRY

        start_http_server(metrics_port, registry=REGISTRY)
    run(config, namespaces=namespace, liveness=liveness or None, verbose=verbose)
