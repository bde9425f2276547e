"""Helpers of the observability tests: the rules, the dashboards and the PromQL inside them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import yaml

from tests.fixtures.tools import REPO

OBSERVABILITY = REPO / "manifests" / "observability"
RULES_FILE = OBSERVABILITY / "rules" / "apextrader-alerts.yaml"
DASHBOARDS = sorted((OBSERVABILITY / "dashboards").glob("*.json"))

#: docs/conventions.md §3, metric -> label names (histograms also expose _bucket/_sum/_count).
METRICS: Final[dict[str, set[str]]] = {
    "apex_events_total": {"agent", "track", "type", "outcome"},
    "apex_handler_seconds": {"agent", "track", "type"},
    "apex_pipeline_latency_seconds": {"track"},
    "apex_dlq_total": {"agent", "track", "stream", "reason"},
    "apex_slippage_bps": {"track", "exchange", "symbol"},
    "apex_margin_violations_total": {"track"},
    "apex_orders_total": {"track", "state"},
    "apex_position_notional": {"track", "symbol"},
    "apex_pnl": {"track", "symbol"},
    "apex_expectancy": {"track", "strategy"},
    "apex_canary_weight_applied": {"track"},
    "apex_source_up": {"exchange"},
    "apex_canary_phase": {"pipeline", "phase"},
    "apex_canary_weight": {"pipeline"},
    "apex_stream_gap_total": {"agent", "stream"},
    "apex_stream_discarded_total": {"stream"},
    "apex_stream_fill_ratio": {"stream"},
    "apex_snapshots_shed_total": {"agent"},
    "apex_canary_analysis_value": {"pipeline", "track", "criterion"},
    "apex_canary_analysis_threshold": {"pipeline", "track", "criterion"},
    "apex_canary_analysis_result": {"pipeline", "track", "criterion"},
    "apex_walkforward_statistic": {"track", "strategy", "exchange", "symbol"},
    "apex_walkforward_threshold": {"track", "strategy", "exchange", "symbol"},
    "apex_walkforward_accepted": {"track", "strategy", "exchange", "symbol"},
    "apex_input_dropped_total": {"exchange", "kind"},
}
HISTOGRAMS: Final = {"apex_handler_seconds", "apex_pipeline_latency_seconds", "apex_slippage_bps"}
#: Labels the scrape adds (PodMonitor relabelling) on top of the metrics' own.
TARGET_LABELS: Final = {"pipeline", "agent", "track", "namespace", "pod", "job", "instance", "le"}

#: Grafana variables, replaced by sample values so promtool can parse the expressions.
GRAFANA_VARS: Final = {"$__rate_interval": "5m", "$pipeline": "btc-perp", "$agent": "execution"}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target and annotation query of a dashboard."""
    found = [
        (f"{dashboard['uid']}/panel {p['id']} {p['title']!r}", t["expr"])
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    found += [
        (f"{dashboard['uid']}/annotation {a['name']!r}", a["expr"]) for a in dashboard["annotations"]["list"]
    ]
    return found


def load_dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in DASHBOARDS]


def substitute(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


_METRIC_RE = re.compile(r"\b(apex_[a-z_]+)\b")


def metric_names(expr: str) -> set[str]:
    """Base metric names an expression reads (`_bucket`/`_sum`/`_count` of histograms folded)."""
    names = set()
    for name in _METRIC_RE.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def rules_file_from_exprs(exprs: list[tuple[str, str]], path: Path) -> Path:
    """A recording-rules file holding each expression, so `promtool check rules` parses them all."""
    rules = [{"record": f"apex_dashboard_check:{i}", "expr": substitute(e)} for i, (_, e) in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": rules}]}))
    return path
