"""The live terminal view of `apex up` (rich): agents, tracks, canary weight, and a progress bar."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from apextrader.contracts.status import AnalysisRun
from apextrader.local.monitor import LiveSnapshot
from apextrader.report.tracks import own_weight

_RESULT_COLOUR = {"Pass": "green", "Fail": "red", "Inconclusive": "yellow"}


def _num(v: float | None, fmt: str = "{:.1f}", none: str = "–") -> str:
    return none if v is None else fmt.format(v)


def agents_table(snap: LiveSnapshot) -> Table:
    table = Table(title="agents", expand=True, title_justify="left")
    for col, justify in (
        ("agent", "left"),
        ("health", "left"),
        ("pid", "right"),
        ("restarts", "right"),
        ("events", "right"),
        ("ev/s", "right"),
        ("handler p99 ms", "right"),
        ("RSS MB", "right"),
        ("DLQ", "right"),
        ("shed", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for a in snap.agents:
        health = "[green]ready[/]" if a.ready else "[red]down[/]"
        table.add_row(
            a.key,
            health,
            str(a.pid or "–"),
            str(a.restarts),
            f"{a.handled:.0f}",
            f"{a.events_per_s:.1f}",
            _num(a.handler_p99_ms, "{:.2f}"),
            _num(a.rss_mb, "{:.0f}"),
            f"[red]{a.dlq:.0f}[/]" if a.dlq else "0",
            _shed(a.shed),
        )
    return table


def _shed(n: float | None) -> str:
    """Intrabar snapshots the agent coalesced away while behind (docs/bus.md, Overload)."""
    if n is None:
        return "–"
    return f"[yellow]{n:.0f}[/]" if n else "0"


def tracks_table(snap: LiveSnapshot, declared_weight: int | None, canary_state: str) -> Table:
    title = (
        "tracks"
        if declared_weight is None
        else f"tracks · canary {declared_weight}% declared · {canary_state}"
    )
    table = Table(title=title, expand=True, title_justify="left")
    for col in (
        "track",
        "weight % (applied)",
        "latency p50 ms",
        "p99 ms",
        "approved orders",
        "fills",
        "mean adverse slip bps",
        "position notional",
        "PnL",
        "margin viol.",
    ):
        table.add_column(col, justify="left" if col == "track" else "right")
    has_canary = any(t.track == "canary" for t in snap.tracks)
    for t in snap.tracks:
        table.add_row(
            t.track,
            _num(own_weight(t.track, t.weight_applied, has_canary), "{:.0f}%"),  # the track's own share
            _num(t.latency_p50_ms, "{:.2f}"),
            _num(t.latency_p99_ms, "{:.2f}"),
            f"{t.approved:.0f}",
            f"{t.fills:.0f}",
            _num(t.slippage_avg_bps, "{:.2f}"),
            f"{t.position_notional:,.0f}",
            _num(t.pnl, "{:,.2f}"),
            f"[red]{t.margin_violations:.0f}[/]" if t.margin_violations else "0",
        )
    return table


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("/"),
        TimeRemainingColumn(),
    )


def analysis_table(run: AnalysisRun) -> Table:
    """The canary's last analysis (`canary.analysis.judge`): each criterion against the spec's goal."""
    table = Table(title=f"analysis ({run.track}) · {run.result}", expand=True, title_justify="left")
    for col in ("criterion", "measured", "goal", "result"):
        table.add_column(col, justify="left" if col in ("criterion", "result") else "right")
    for c in run.checks:
        goal = f"> {c.threshold:g}" if c.name.startswith("min") else f"≤ {c.threshold:g}"
        colour = _RESULT_COLOUR[c.result]
        table.add_row(c.name, _num(c.value, "{:.4g}"), goal, f"[{colour}]{c.result}[/]")
    return table


def render(
    snap: LiveSnapshot | None,
    progress: Progress,
    declared_weight: int | None,
    canary_state: str,
    analysis: AnalysisRun | None = None,
) -> RenderableType:
    if snap is None:
        return Group("[dim]starting…[/]", progress)
    parts: list[RenderableType] = [agents_table(snap), tracks_table(snap, declared_weight, canary_state)]
    if analysis is not None:
        parts.append(analysis_table(analysis))
    return Group(*parts, progress)
