"""The `apex up` HTML report: one self-contained file (plotly's JS inlined, nothing from the internet)."""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from apextrader.report.gonogo import evaluate
from apextrader.report.run_summary import RunSummary
from apextrader.report.tracks import SLIPPAGE_NOTE, currency, own_weight, slippage_summary

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1f2328}
h1{margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;font-size:.9rem} th,td{padding:.35rem .6rem;border-bottom:1px solid #eaeef2;text-align:left}
th{background:#f6f8fa} .PASS{color:#1a7f37;font-weight:700} .FAIL{color:#cf222e;font-weight:700} .NA{color:#6e7781;font-weight:700}
.muted{color:#6e7781}
"""
_TRACK_COLORS = {"stable": "#0969da", "canary": "#bf8700"}


def _ts(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC)


def _fig_html(fig: go.Figure) -> str:
    fig.update_layout(margin={"l": 40, "r": 20, "t": 40, "b": 40}, height=360, template="plotly_white")
    return str(fig.to_html(full_html=False, include_plotlyjs=False))


def _table(headers: list[str], rows: list[list[str]], raw_cols: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{c if i in raw_cols else html.escape(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def gonogo_section(s: RunSummary) -> str:
    rows = []
    for r in evaluate(s):
        css = "NA" if r.verdict == "N/A" else r.verdict
        rows.append(
            [
                html.escape(r.criterion),
                html.escape(r.goal),
                html.escape(r.measured),
                f'<span class="{css}">{r.verdict}</span>',
            ]
        )
    return _table(["criterion", "goal", "measured", "verdict"], rows, raw_cols=frozenset({0, 1, 2, 3}))


def equity_figure(s: RunSummary) -> go.Figure:
    fig = go.Figure()
    for t in s.tracks:
        if t.equity:
            fig.add_scatter(
                x=[_ts(x) for x, _ in t.equity],
                y=[y for _, y in t.equity],
                name=t.track,
                line={"color": _TRACK_COLORS.get(t.track)},
            )
    fig.update_layout(title="Equity per track (capital share + PnL)", yaxis_title=currency(s))
    return fig


def slippage_figure(s: RunSummary) -> go.Figure:
    fig = go.Figure()
    for t in s.tracks:
        if t.slippage_bps:
            fig.add_histogram(
                x=t.slippage_bps, name=t.track, opacity=0.7, marker_color=_TRACK_COLORS.get(t.track)
            )
    fig.update_layout(
        title="Slippage per fill (bps vs mid at decision; positive = adverse)",
        barmode="overlay",
        xaxis_title="bps",
    )
    return fig


def latency_figure(s: RunSummary) -> go.Figure:
    fig = go.Figure()
    for t in s.tracks:
        if not t.latency_buckets:
            continue
        labels, counts, prev = [], [], 0.0
        for le, cum in t.latency_buckets:
            labels.append("+Inf" if le == float("inf") else f"≤{le * 1000:g} ms")
            counts.append(cum - prev)
            prev = cum
        fig.add_bar(x=labels, y=counts, name=t.track, marker_color=_TRACK_COLORS.get(t.track))
    fig.update_layout(
        title="Pipeline latency, snapshot → execution decision", barmode="group", yaxis_title="events"
    )
    return fig


def trades_figures(s: RunSummary) -> list[go.Figure]:
    figs = []
    for series in s.prices:
        fig = go.Figure()
        fig.add_scatter(
            x=[_ts(x) for x in series.times], y=series.closes, name="close", line={"color": "#57606a"}
        )
        for track in ("stable", "canary"):
            for side, symbol in (("buy", "triangle-up"), ("sell", "triangle-down")):
                fills = [
                    f
                    for f in s.fills
                    if f.symbol == series.symbol
                    and f.exchange == series.exchange
                    and f.track == track
                    and f.side == side
                ]
                if fills:
                    fig.add_scatter(
                        x=[_ts(f.time) for f in fills],
                        y=[f.price for f in fills],
                        mode="markers",
                        name=f"{track} {side}",
                        marker={"symbol": symbol, "size": 10, "color": _TRACK_COLORS.get(track)},
                    )
        fig.update_layout(title=f"Trades on price: {series.symbol} ({series.exchange})")
        figs.append(fig)
    return figs


def _steady_text(s: RunSummary) -> str:
    rate = s.steady_snapshot_rate
    if s.steady_window is None or rate is None:
        return "the pipeline never caught up with its start-up backlog: no steady state to measure"
    start, end = s.steady_window
    return (
        f"steady state: {end - start:.0f} s from {start - s.started_at:.0f} s after start "
        f"(start-up backlog cleared) until market data stopped, {rate:.0f} snapshots/s"
    )


def _fill_models(s: RunSummary) -> str:
    """How the fills were priced: `book` walks an order book, `bar` is the bar model (no depth)."""
    counts = Counter(f.fill_model for f in s.fills)
    return ", ".join(f"{n} {model}-model" for model, n in sorted(counts.items())) or "none"


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def tracks_table(s: RunSummary) -> str:
    """One row per track: its own weight and capital, orders, slippage three ways (so an outlier
    cannot hide in a mean), latency and margin violations; every heading names its unit."""
    ccy = currency(s)
    has_canary = any(t.track == "canary" for t in s.tracks)
    rows = []
    for t in s.tracks:
        slip = slippage_summary(t.slippage_bps)
        rows.append(
            [
                t.track,
                _num(own_weight(t.track, t.weight_applied, has_canary), "{:.0f}"),
                f"{t.capital:,.0f}",
                str(t.approved),
                str(t.fills),
                str(t.duplicate_fills),
                _num(slip.signed_mean, "{:+.2f}"),
                _num(slip.mean_adverse, "{:.2f}"),
                _num(slip.p95_abs, "{:.2f}"),
                _num(slip.worst, "{:+.2f}"),
                _num(t.latency_p50_ms, "{:.2f}"),
                _num(t.latency_p99_ms, "{:.2f}"),
                f"{t.margin_violations:.0f}",
            ]
        )
    headers = [
        "track", "weight (% of capital)", f"capital ({ccy})", "approved (orders)", "fills (orders)",
        "duplicate fills (orders)", "slippage mean (bps, signed, + adverse)", "mean adverse slippage (bps)",
        "p95 |slippage| (bps)", "worst slippage (bps)", "p50 latency (ms, whole run)",
        "p99 latency (ms, whole run)", "margin violations (count)",
    ]  # fmt: skip
    return _table(headers, rows)


def gate_section(s: RunSummary) -> str:
    """The backtester's last record per (track, strategy, market): accepted when t > threshold."""
    if not s.gate:
        return '<p class="muted">no walk-forward record observed (the backtester had too few bars, or was not scraped)</p>'
    rows = [
        [g.track, g.strategy, g.exchange, g.symbol, _num(g.statistic, "{:+.2f}"), _num(g.threshold, "{:.2f}"),
         f'<span class="{"PASS" if g.accepted else "FAIL"}">{"accepted" if g.accepted else "rejected"}</span>']
        for g in s.gate
    ]  # fmt: skip
    accepted = sum(g.accepted for g in s.gate)
    note = (
        f"{accepted} of {len(s.gate)} records accepted at the end of the run. Method oos-t-bonferroni: the "
        "t-statistic of the out-of-sample per-trade returns must exceed the Student-t threshold at "
        "1 - backtest.significance / trials (docs/backtest.md)."
    )
    headers = ["track", "strategy", "exchange", "symbol", "t-statistic", "threshold (t)", "verdict"]
    return f'<p class="muted">{html.escape(note)}</p>' + _table(headers, rows, raw_cols=frozenset({6}))


def _canary_text(s: RunSummary) -> str:
    """The canary's end state; after an abort, what was done with its positions (abortPolicy)."""
    c = s.canary
    if c is None:
        return ""
    held = "" if c.open_notional is None else f" · canary open notional at the end {c.open_notional:,.0f}"
    note = html.escape(c.message or "")
    return f'<p class="muted">canary phase {html.escape(c.phase)} (abortPolicy {c.abort_policy}){held}. {note}</p>'


SHED_NOTE = (
    "A consumer that falls behind acks a forming-bar snapshot unhandled when a later one of the same "
    "market is in the same fetch (the latest wins); closed bars, signals and orders are never shed. "
    "Counted since each agent process last started."
)


def shed_section(s: RunSummary) -> str:
    """Snapshots each agent shed under overload (`summary.json` `shed`)."""
    if not s.shed:
        return '<p class="muted">not measured</p>'
    rows = [[key, f"{n:,}"] for key, n in sorted(s.shed.items())]
    return _table(["agent", "shed snapshots (msgs)"], rows) + f'<p class="muted">{html.escape(SHED_NOTE)}</p>'


def render_run_report(s: RunSummary) -> str:
    started = _ts(s.started_at).strftime("%Y-%m-%d %H:%M:%S UTC")
    outages = [
        [
            o.key,
            _ts(o.started).strftime("%H:%M:%S"),
            f"{(o.ended - o.started):.2f}" if o.ended else "not recovered",
            str(o.exit_code),
        ]
        for a in s.agents
        for o in a.outages
    ]
    consumers = [
        [
            c.stream,
            c.durable,
            str(c.matched),
            str(c.acked),
            str(c.dlq),
            str(c.pending),
            "yes" if c.balanced else "NO",
        ]
        for c in s.consumers
    ]
    stages = [
        [kind, str(st.count), f"{st.p50_ms:.2f}", f"{st.p99_ms:.2f}", f"{st.max_ms:.2f}"]
        for kind, st in s.stage_latency.items()
    ]
    memory = [[a.key, f"{a.rss_peak_mb:.0f}"] for a in s.agents if a.rss_peak_mb is not None]
    if s.rss_total_peak_mb is not None:
        memory.append(["all agents together", f"{s.rss_total_peak_mb:.0f}"])
    sections = [
        f"<h1>ApexTrader run: {html.escape(s.pipeline)}</h1>",
        f'<p class="muted">{started} · {s.duration_s:.0f} s · source {html.escape(s.source)} · '
        f"{sum(len(t.slippage_bps) for t in s.tracks)} fills ({_fill_models(s)}) · "
        f"{s.dlq_total} DLQ entries · {sum(s.shed.values()):,} snapshots shed</p>",
        "<h2>Go/No-Go</h2>",
        gonogo_section(s),
        "<h2>Tracks</h2>",
        tracks_table(s),
        f'<p class="muted">{html.escape(SLIPPAGE_NOTE)}</p>',
        "<h2>Walk-forward gate</h2>",
        gate_section(s),
        _canary_text(s),
        _fig_html(equity_figure(s)),
        _fig_html(slippage_figure(s)),
        _fig_html(latency_figure(s)),
        "<h2>Latency from the snapshot, per event type</h2>",
        f'<p class="muted">{_steady_text(s)}</p>',
        _table(["event", "count (events)", "p50 (ms)", "p99 (ms)", "max (ms)"], stages)
        if stages
        else '<p class="muted">no live events</p>',
        "<h2>Trades on price</h2>",
        *[_fig_html(f) for f in trades_figures(s)],
        "<h2>Outages</h2>",
        _table(["agent", "at (UTC)", "down for (s)", "exit code"], outages)
        if outages
        else '<p class="muted">none</p>',
        "<h2>Bus accounting</h2>",
        _table(
            [
                "stream",
                "consumer",
                "matched (msgs)",
                "acked (msgs)",
                "DLQ (msgs)",
                "pending (msgs)",
                "balanced",
            ],
            consumers,
        ),
        "<h2>Overload: shed snapshots</h2>",
        shed_section(s),
        "<h2>Memory (peak RSS, MB)</h2>",
        _table(["agent", "peak RSS (MB)"], memory) if memory else '<p class="muted">not sampled</p>',
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>ApexTrader run {html.escape(s.pipeline)}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )


def write_run_report(summary: RunSummary, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_run_report(summary), encoding="utf-8")
    return path
