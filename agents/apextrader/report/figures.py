"""Plotly figures of a run. Long series are thinned to `MAX_POINTS` for the browser (every k-th bar;
drawdown keeps each bucket's worst point so the maximum drawdown stays visible)."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
import polars as pl

MAX_POINTS: Final = 5000
_LAYOUT: Final = {"template": "plotly_white", "height": 360, "margin": {"l": 50, "r": 20, "t": 40, "b": 30}}


def _stride(n: int) -> int:
    return max(1, -(-n // MAX_POINTS))


def figure_price(prices: pl.DataFrame, trades: pl.DataFrame, title: str = "Price") -> go.Figure:
    """Close price with entries (triangles: up long, down short) and exits (crosses)."""
    k = _stride(prices.height)
    thin = prices.gather_every(k)
    fig = go.Figure(go.Scattergl(x=thin["timestamp"], y=thin["close"], mode="lines", name="close"))
    if trades.height:
        for side, symbol, color in (
            ("long", "triangle-up", "#16a34a"),
            ("short", "triangle-down", "#dc2626"),
        ):
            t = trades.filter(pl.col("side") == side)
            fig.add_trace(
                go.Scattergl(
                    x=t["entry_time"], y=t["entry_price"], mode="markers", name=f"{side} entry",
                    marker={"symbol": symbol, "size": 9, "color": color},
                )
            )  # fmt: skip
        fig.add_trace(
            go.Scattergl(
                x=trades["exit_time"], y=trades["exit_price"], mode="markers", name="exit",
                marker={"symbol": "x", "size": 7, "color": "#334155"},
                text=trades["exit_reason"] if "exit_reason" in trades.columns else None,
            )
        )  # fmt: skip
    fig.update_layout(title=title, **_LAYOUT)
    return fig


def figure_equity(equity: pl.DataFrame, title: str = "Equity") -> go.Figure:
    """`equity` has timestamp and equity (and optional further numeric series to overlay)."""
    k = _stride(equity.height)
    thin = equity.gather_every(k)
    fig = go.Figure()
    for col in thin.columns:
        if col != "timestamp" and col != "position" and thin[col].dtype.is_numeric():
            fig.add_trace(go.Scattergl(x=thin["timestamp"], y=thin[col], mode="lines", name=col))
    fig.update_layout(title=title, **_LAYOUT)
    return fig


def drawdown(equity: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(equity / np.maximum.accumulate(equity) - 1.0, dtype=np.float64)


def figure_drawdown(equity: pl.DataFrame, title: str = "Drawdown") -> go.Figure:
    dd = drawdown(equity["equity"].to_numpy())
    k = _stride(dd.size)
    n = dd.size // k * k
    worst = dd[:n].reshape(-1, k).min(axis=1) if n else dd
    x = equity["timestamp"].gather_every(k)[: worst.size]
    fig = go.Figure(go.Scattergl(x=x, y=worst * 100, mode="lines", fill="tozeroy", name="drawdown %"))
    fig.update_layout(title=title, yaxis_title="%", **_LAYOUT)
    return fig


def figure_html(fig: go.Figure) -> str:
    """A figure as an HTML fragment; the page (`html_page`) inlines plotly.js once."""
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
