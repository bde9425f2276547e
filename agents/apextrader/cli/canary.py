"""`apex canary status|set-weight|pause|resume|promote|abort NAME`: steer a canary.

On a cluster the commands patch the TradingPipeline through the kubeconfig (the operator does the
rest); with `--local` they act on a running `apex up` through KV `canary.request`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from apextrader.canary.actions import ActionError, ActionName, CanaryAction, apply_action
from apextrader.canary.weights import WeightError, parse_weight
from apextrader.cli.errors import UsageError, console, friendly
from apextrader.contracts.status import CanaryStatus

app = typer.Typer(
    name="canary",
    help="Steer the canary capital split: status, set-weight, pause, resume, promote, abort.",
    no_args_is_help=True,
)

NAME = typer.Argument(..., help="The TradingPipeline's name.", metavar="NAME")
NS = typer.Option(None, "--namespace", "-n", help="Namespace (default: the kubeconfig context's).")
KUBECONFIG = typer.Option(None, "--kubeconfig", help="Path to a kubeconfig (default: $KUBECONFIG).")
CONTEXT = typer.Option(None, "--context", help="kubeconfig context (default: the current one).")
LOCAL = typer.Option(False, "--local", help="Act on a running `apex up` instead of a cluster.")
DATA_DIR = typer.Option(
    None, "--data-dir", help="`apex up`'s data directory (with --local; default .apex/NAME)."
)


#: Re-reads after a resourceVersion conflict before giving up.
CONFLICT_RETRIES = 5


async def _cr(
    name: str, ns: str | None, kubeconfig: str | None, context: str | None
) -> tuple[Any, dict[str, Any]]:
    from apextrader_operator.kube import KubeClient, load_credentials

    kube = KubeClient(load_credentials(kubeconfig, context))
    namespace = ns or kube.creds.namespace
    obj = await kube.get("TradingPipeline", namespace, name)
    if obj is None:
        await kube.close()
        raise UsageError(f"TradingPipeline {namespace}/{name} not found", code=1)
    return kube, obj


async def _patch_spec(
    name: str, ns: str | None, kubeconfig: str | None, context: str | None, action: Any
) -> str:
    """Fetch the CR, compute a spec patch with `action(cr)`, send it guarded by resourceVersion.

    The operator writes status every tick, and on a real API server each write moves the CR's
    resourceVersion: a 409 means "re-read and decide again" (client-go's RetryOnConflict)."""
    from apextrader_operator.apply import merge_diff
    from apextrader_operator.kube import KubeError

    for attempt in range(CONFLICT_RETRIES):
        kube, obj = await _cr(name, ns, kubeconfig, context)
        try:
            new_spec, message = action(obj)
            patch = {
                "metadata": {"resourceVersion": obj["metadata"].get("resourceVersion")},
                "spec": merge_diff(obj["spec"], new_spec),
            }
            await kube.patch("TradingPipeline", obj["metadata"].get("namespace"), name, patch)
            return str(message)
        except KubeError as exc:
            if exc.status != 409 or attempt + 1 == CONFLICT_RETRIES:
                raise
        finally:
            await kube.close()
    raise AssertionError("unreachable")


def _status(obj: dict[str, Any]) -> CanaryStatus | None:
    raw = (obj.get("status") or {}).get("canary")
    return CanaryStatus.model_validate(raw) if raw else None


def _local(name: str, data_dir: Path | None, action: CanaryAction) -> str:
    from apextrader.bus.client import connect
    from apextrader.bus.kv import KV
    from apextrader.bus.topology import KV_CANARY_REQUEST, kv_bucket
    from apextrader.local.canary_driver import request_json
    from apextrader.local.localbus import admin_login
    from apextrader.local.options import default_data_dir

    data_dir = data_dir or default_data_dir(name)
    runtime_file = data_dir / "runtime.json"
    if not runtime_file.exists():
        raise UsageError(f"{runtime_file} not found: is `apex up --data-dir {data_dir}` running?", code=1)
    runtime = json.loads(runtime_file.read_text())
    request = request_json(action)

    async def send() -> None:
        nc = await connect(
            ",".join(runtime.get("nats_urls") or [runtime["nats_url"]]),
            name="apex-canary",
            max_reconnect_attempts=1,
            **admin_login(runtime),
        )
        try:
            kv = await KV.open(nc.jetstream(), kv_bucket(runtime["pipeline"]))
            await kv.put_json(KV_CANARY_REQUEST, request)
        finally:
            await nc.close()

    asyncio.run(send())
    return f"sent {request} to {runtime['pipeline']} (apex up)"


def _act(
    name: str,
    action: CanaryAction,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    local: bool,
    data_dir: Path | None,
) -> None:
    """One action on either backend: the same `apply_action` decides what the spec becomes."""
    if local:
        console.print(_local(name, data_dir, action), highlight=False)
        return

    def patch(obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
        try:
            result = apply_action(obj.get("spec") or {}, _status(obj), action)
        except ActionError as exc:
            raise UsageError(f"{name}: {exc}", code=1) from None
        return result.spec, f"{name}: {result.message}"

    console.print(asyncio.run(_patch_spec(name, namespace, kubeconfig, context, patch)), highlight=False)


@app.command("set-weight")
@friendly
def set_weight(
    name: str = NAME,
    weight: int = typer.Argument(..., help="Percent of capital on the canary (0-100).", metavar="WEIGHT"),
    namespace: str | None = NS,
    kubeconfig: str | None = KUBECONFIG,
    context: str | None = CONTEXT,
    local: bool = LOCAL,
    data_dir: Path | None = DATA_DIR,
) -> None:
    """Set the manual canary weight (an abort stays until [bold]abort --clear[/]).

    Example: [bold]apex canary set-weight btc-perp 25 -n trading[/]"""
    try:
        parse_weight(weight)
    except WeightError as exc:
        raise UsageError(f"WEIGHT: {exc}") from None
    action = CanaryAction(action="set-weight", weight=weight)
    _act(name, action, namespace, kubeconfig, context, local, data_dir)


def _simple(verb: ActionName, doc: str) -> Any:
    def command(
        name: str = NAME,
        namespace: str | None = NS,
        kubeconfig: str | None = KUBECONFIG,
        context: str | None = CONTEXT,
        local: bool = LOCAL,
        data_dir: Path | None = DATA_DIR,
    ) -> None:
        _act(name, CanaryAction(action=verb), namespace, kubeconfig, context, local, data_dir)

    command.__doc__ = f"{doc} Example: [bold]apex canary {verb} btc-perp -n trading[/]"
    return friendly(command)


app.command("pause")(_simple("pause", "Pause the canary: freeze the step timer; weights stay."))
app.command("resume")(
    _simple(
        "resume",
        "Resume the canary: unfreeze the step timer and release an indefinite pause at the current step.",
    )
)
app.command("promote")(
    _simple(
        "promote",
        "Make the canary the new stable: fold canary.template into the spec and remove spec.canary"
        " (one patch; under apex up the stable agents restart on the folded spec).",
    )
)


@app.command("abort")
@friendly
def abort(
    name: str = NAME,
    clear: bool = typer.Option(False, "--clear", help="Clear the abort: the rollout restarts from step 0."),
    namespace: str | None = NS,
    kubeconfig: str | None = KUBECONFIG,
    context: str | None = CONTEXT,
    local: bool = LOCAL,
    data_dir: Path | None = DATA_DIR,
) -> None:
    """Abort the canary (weight 0; spec.canary.abortPolicy says what happens to its positions).

    Example: [bold]apex canary abort btc-perp[/]"""
    action = CanaryAction(action="clear-abort" if clear else "abort")
    _act(name, action, namespace, kubeconfig, context, local, data_dir)


@app.command("status")
@friendly
def status(
    name: str = NAME,
    namespace: str | None = NS,
    kubeconfig: str | None = KUBECONFIG,
    context: str | None = CONTEXT,
) -> None:
    """Show the canary: phase, declared/effective/applied weights, step, last analysis.

    Example: [bold]apex canary status btc-perp -n trading[/]"""

    async def fetch() -> dict[str, Any]:
        kube, obj = await _cr(name, namespace, kubeconfig, context)
        await kube.close()
        return obj

    obj = asyncio.run(fetch())
    canary = (obj.get("status") or {}).get("canary") or {}
    applied = canary.get("appliedWeight") or {}
    phase = canary.get("phase", "None")
    console.print(
        f"[bold]{name}[/]  phase [bold]{phase}[/]  declared {canary.get('declaredWeight', 0)}%"
        f"  effective {canary.get('effectiveWeight', 0)}%  applied canary {applied.get('canary', '-')}%"
        f" / stable {applied.get('stable', '-')}%  step {canary.get('stepIndex', '-')}",
        highlight=False,
    )
    if canary.get("message"):
        console.print(canary["message"], highlight=False)
    last = canary.get("lastAnalysis")
    if last:
        table = Table(title=f"analysis {last['at']}: {last['result']}")
        for col in ("check", "value", "threshold", "result"):
            table.add_column(col)
        for c in last.get("checks", []):
            value = "n/a" if c.get("value") is None else f"{c['value']:.4g}"
            colour = {"Pass": "green", "Fail": "red"}.get(c["result"], "yellow")
            table.add_row(c["name"], value, f"{c['threshold']:.4g}", f"[{colour}]{c['result']}[/]")
        console.print(table)
