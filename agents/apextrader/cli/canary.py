"""`apex canary status|set-weight|pause|resume|promote|abort NAME`: steer a canary.

On a cluster the commands patch the TradingPipeline through the kubeconfig (the operator does the
rest); with `--local` they act on a running `apex up` through KV `canary.request`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from apextrader.cli.errors import UsageError, console, friendly
from apextrader.contracts import PipelineError, merge_patch, parse_pipeline

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
    """Fetch the CR, compute a spec patch with `action(cr)`, send it guarded by resourceVersion."""
    from apextrader_operator.apply import merge_diff

    kube, obj = await _cr(name, ns, kubeconfig, context)
    try:
        new_spec, message = action(obj)
        patch = {
            "metadata": {"resourceVersion": obj["metadata"].get("resourceVersion")},
            "spec": merge_diff(obj["spec"], new_spec),
        }
        await kube.patch("TradingPipeline", obj["metadata"].get("namespace"), name, patch)
        return str(message)
    finally:
        await kube.close()


def _canary(obj: dict[str, Any]) -> dict[str, Any]:
    canary = obj.get("spec", {}).get("canary")
    if not canary:
        raise UsageError(f"{obj['metadata']['name']} has no spec.canary", code=1)
    return dict(canary)


def _with_canary(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**obj["spec"], "canary": {**_canary(obj), **changes}}


def _local(name: str, data_dir: Path | None, request: dict[str, Any]) -> str:
    from apextrader.bus.client import connect
    from apextrader.bus.kv import KV
    from apextrader.bus.topology import KV_CANARY_REQUEST, kv_bucket
    from apextrader.local.localbus import admin_login
    from apextrader.local.options import default_data_dir

    data_dir = data_dir or default_data_dir(name)
    runtime_file = data_dir / "runtime.json"
    if not runtime_file.exists():
        raise UsageError(f"{runtime_file} not found: is `apex up --data-dir {data_dir}` running?", code=1)
    runtime = json.loads(runtime_file.read_text())

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


def _run(name: str, ns: str | None, kubeconfig: str | None, context: str | None, action: Any) -> None:
    console.print(asyncio.run(_patch_spec(name, ns, kubeconfig, context, action)))


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
    """Set the manual canary weight. Example: [bold]apex canary set-weight btc-perp 25 -n trading[/]"""
    if not 0 <= weight <= 100:
        raise UsageError("WEIGHT must be between 0 and 100")
    if local:
        console.print(_local(name, data_dir, {"action": "set-weight", "weight": weight}))
        return

    def action(obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
        if _canary(obj).get("steps") is not None:
            raise UsageError(
                "this canary is stepped (spec.canary.steps): pause, promote, abort or edit the steps instead",
                code=1,
            )
        return _with_canary(obj, weight=weight), f"{name}: canary weight {weight}%"

    _run(name, namespace, kubeconfig, context, action)


#: From the pipeline as it is now: extra canary changes and a note for the message.
Extra = Callable[[dict[str, Any]], tuple[dict[str, Any], str]]


def _flag(flag: str, value: bool, verb: str, doc: str | None = None, extra: Extra | None = None) -> Any:
    def command(
        name: str = NAME,
        namespace: str | None = NS,
        kubeconfig: str | None = KUBECONFIG,
        context: str | None = CONTEXT,
        local: bool = LOCAL,
        data_dir: Path | None = DATA_DIR,
    ) -> None:
        if local:
            console.print(_local(name, data_dir, {"action": verb}))
            return

        def action(obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
            more, note = extra(obj) if extra else ({}, "")
            return _with_canary(obj, **{flag: value}, **more), f"{name}: {verb}{note}"

        _run(name, namespace, kubeconfig, context, action)

    command.__doc__ = (doc or f"{verb.capitalize()} the canary.") + (
        f" Example: [bold]apex canary {verb} btc-perp -n trading[/]"
    )
    return friendly(command)


def _release_current_step(obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """`resumeStep` = the current step, which releases an indefinite pause there."""
    step = (obj.get("status") or {}).get("canary", {}).get("stepIndex")
    return ({}, "") if step is None else ({"resumeStep": step}, f" (past step {step})")


app.command("pause")(_flag("paused", True, "pause"))
app.command("resume")(
    _flag(
        "paused",
        False,
        "resume",
        "Resume the canary: unfreeze the step timer and release an indefinite pause at the current step.",
        _release_current_step,
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
    """Abort the canary (weight 0, no new positions). Example: [bold]apex canary abort btc-perp[/]"""
    if local:
        console.print(_local(name, data_dir, {"action": "abort" if not clear else "clear-abort"}))
        return
    changes = {"abort": False} if clear else {"abort": True, "promote": False}
    _run(
        name,
        namespace,
        kubeconfig,
        context,
        lambda o: (_with_canary(o, **changes), f"{name}: abort={not clear}"),
    )


def fold(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec after a promote: `canary.template` merged into the base (RFC 7386), canary removed."""
    canary = spec.get("canary") or {}
    base = {k: v for k, v in spec.items() if k != "canary"}
    return dict(merge_patch(base, canary.get("template") or {}))


@app.command("promote")
@friendly
def promote(
    name: str = NAME,
    namespace: str | None = NS,
    kubeconfig: str | None = KUBECONFIG,
    context: str | None = CONTEXT,
    local: bool = LOCAL,
    data_dir: Path | None = DATA_DIR,
) -> None:
    """Make the canary the new stable: fold canary.template into the spec and remove spec.canary (one
    patch). Example: [bold]apex canary promote btc-perp -n trading[/]"""
    if local:
        console.print(_local(name, data_dir, {"action": "promote"}))
        return

    def action(obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
        _canary(obj)
        new_spec = fold(obj["spec"])
        try:
            parse_pipeline({**obj, "spec": new_spec, "status": None})
        except PipelineError as exc:
            raise UsageError(
                "promoting would make the spec invalid: " + "; ".join(exc.errors), code=1
            ) from None
        return new_spec, f"{name}: promoted (template folded into the spec, canary removed)"

    _run(name, namespace, kubeconfig, context, action)


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
