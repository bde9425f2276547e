"""`apex dlq ls|show|replay`: inspect and replay dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from nats.aio.client import Client as NatsClient
from rich.table import Table

from apextrader.bus import dlq as dlq_store
from apextrader.bus.client import connect_once
from apextrader.cli.errors import UsageError, console, friendly

app = typer.Typer(
    name="dlq",
    help="Dead-letter queue: list, show and replay events that could not be handled.\n\n"
    "Example: [bold]apex dlq ls --pipeline btc-perp[/]",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
T = TypeVar("T")

PipelineOpt = typer.Option(None, "--pipeline", "-p", help="Pipeline name (default: every pipeline's DLQ).")
NatsOpt = typer.Option("nats://127.0.0.1:4222", "--nats", envvar="APEX_NATS_URL", help="NATS URL.")


def _login(url: str) -> dict[str, str]:
    """`APEX_NATS_USER`/`APEX_NATS_PASSWORD`, else the admin login of the `apex up` serving `url`."""
    import os

    from apextrader.local.localbus import find_admin_login

    user = os.environ.get("APEX_NATS_USER")
    if user:
        return {"user": user, "password": os.environ.get("APEX_NATS_PASSWORD", "")}
    return find_admin_login(url)


def _run(url: str, body: Callable[[NatsClient], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            nc = await connect_once(url, name="apex-dlq", **_login(url))
        except Exception:
            raise UsageError(
                f"cannot connect to NATS at {url} (is the pipeline running? use --nats)", 1
            ) from None
        try:
            return await body(nc)
        finally:
            await nc.close()

    return asyncio.run(main())


async def _find(nc: NatsClient, pipeline: str | None, seq: int) -> dlq_store.DlqEntry:
    js = nc.jetstream()
    streams = await dlq_store.dlq_streams(js, pipeline)
    found = [e for s in streams if (e := await dlq_store.get_entry(js, s, seq)) is not None]
    if not found:
        raise UsageError(f"no DLQ entry {seq}" + (f" in pipeline {pipeline}" if pipeline else ""), 1)
    if len(found) > 1:
        raise UsageError(f"DLQ entry {seq} exists in several pipelines; pass --pipeline", 2)
    return found[0]


@app.command("ls")
@friendly
def ls(pipeline: str | None = PipelineOpt, nats_url: str = NatsOpt) -> None:
    """List dead letters (id, time, agent, reason, error).

    Example: [bold]apex dlq ls --pipeline btc-perp --nats nats://127.0.0.1:4222[/]
    """

    async def body(nc: NatsClient) -> list[dlq_store.DlqEntry]:
        js = nc.jetstream()
        return [
            e for s in await dlq_store.dlq_streams(js, pipeline) async for e in dlq_store.iter_entries(js, s)
        ]

    entries = _run(nats_url, body)
    if not entries:
        console.print("DLQ is empty")
        return
    table = Table(title=f"{len(entries)} dead letter(s)", title_justify="left")
    for col in ("id", "stream", "time", "agent", "track", "subject", "reason", "tries", "error"):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "time"))
    for e in entries:
        when = e.time.strftime("%Y-%m-%d %H:%M:%S") if e.time else ""
        table.add_row(
            str(e.seq),
            e.stream,
            when,
            e.agent,
            e.track,
            e.original_subject,
            e.reason,
            str(e.deliveries),
            e.error[:80],
        )
    console.print(table)


@app.command("show")
@friendly
def show(
    entry_id: int = typer.Argument(..., metavar="ID", help="The entry id from `apex dlq ls`."),
    pipeline: str | None = PipelineOpt,
    nats_url: str = NatsOpt,
) -> None:
    """Show one dead letter: headers, error and the original payload.

    Example: [bold]apex dlq show 12 --pipeline btc-perp[/]
    """
    entry = _run(nats_url, lambda nc: _find(nc, pipeline, entry_id))
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in sorted(entry.headers.items()):
        table.add_row(key, value)
    console.print(table)
    console.rule("payload")
    text = entry.data.decode("utf-8", errors="replace")
    console.print(text, highlight=False, soft_wrap=True, markup=False)


@app.command("replay")
@friendly
def replay(
    entry_id: int | None = typer.Argument(None, metavar="ID", help="The entry id from `apex dlq ls`."),
    all_: bool = typer.Option(False, "--all", help="Replay every entry."),
    pipeline: str | None = PipelineOpt,
    nats_url: str = NatsOpt,
) -> None:
    """Republish dead letters to their original subject; each entry is removed only after the publish
    is acknowledged (new Nats-Msg-Id `<id>.replay.<n>`).

    Example: [bold]apex dlq replay 12 --pipeline btc-perp[/] or [bold]apex dlq replay --all[/]
    """
    if (entry_id is None) == (not all_):
        raise UsageError("give an entry ID or --all (not both)")

    async def body(nc: NatsClient) -> int:
        js = nc.jetstream()
        if entry_id is not None:
            entries = [await _find(nc, pipeline, entry_id)]
        else:
            streams = await dlq_store.dlq_streams(js, pipeline)
            entries = [e for s in streams async for e in dlq_store.iter_entries(js, s)]
        for e in entries:
            msg_id = await dlq_store.replay(js, e)
            console.print(f"replayed {e.seq} → {e.original_subject} ({msg_id})", highlight=False)
        return len(entries)

    n = _run(nats_url, body)
    console.print(f"[green]{n} entr{'y' if n == 1 else 'ies'} replayed[/]")
