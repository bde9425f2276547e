"""Self-contained HTML reports: plotly figures with the plotly.js bundle inlined (no script is loaded
from the internet), tables and a page shell. Small functions so `apex backtest` and `apex up` build
their reports from the same blocks."""

from apextrader.report.figures import (
    figure_drawdown,
    figure_equity,
    figure_html,
    figure_price,
)
from apextrader.report.html import Section, html_page, table_html, write_report

__all__ = [
    "Section",
    "figure_drawdown",
    "figure_equity",
    "figure_html",
    "figure_price",
    "html_page",
    "table_html",
    "write_report",
]
