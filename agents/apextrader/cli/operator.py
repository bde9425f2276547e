"""`apex operator`: run the kopf operator (`kopf run -m apextrader_operator.handlers`)."""

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
    a port-forward when running outside the cluster).
    """
    if namespace and all_namespaces:
        raise UsageError("give --namespace or --all-namespaces, not both")
    from kopf.cli import main as kopf_main  # heavy import: only when the operator really runs

    if metrics_port:
        from prometheus_client import start_http_server

        from apextrader.bus.metrics import REGISTRY

        start_http_server(metrics_port, registry=REGISTRY)
    args = ["run", "-m", "apextrader_operator.handlers", "--standalone"]
    args += [f"--namespace={ns}" for ns in namespace] or ["--all-namespaces"]
    if liveness:
        args.append(f"--liveness={liveness}")
    if verbose:
        args.append("--verbose")
    kopf_main(args=args, prog_name="apex operator")
