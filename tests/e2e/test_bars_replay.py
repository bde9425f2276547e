"""`apex up --source replay:bars.parquet` with plain OHLCV bars (no book columns) trades: the paper
venue fills on the bar model, says so in each fill and in the report, and nothing dead-letters."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.e2e.apex_cli import apex, finish, start_up

pytestmark = pytest.mark.slow

PLAIN = ["timestamp", "open", "high", "low", "close", "volume", "symbol", "exchange"]


def plain_bars(tmp: Path) -> Path:
    """A user's own history: the documented columns only, for every exchange of the example."""
    full = tmp / "full.parquet"
    made = apex("data", "synth", "--bars", "3000", "--timeframe", "15m", "-o", str(full))
    assert made.returncode == 0, made.stderr
    bars = pl.read_parquet(full)
    frame = pl.concat([bars.with_columns(exchange=pl.lit(ex)) for ex in ("binance", "bybit", "okx")])
    path = tmp / "bars.parquet"
    frame.select(PLAIN).write_parquet(path)
    return path


def test_plain_bars_replay_trades_on_both_tracks_with_no_dead_letters(tmp_path: Path) -> None:
    data_dir, report = tmp_path / "run", tmp_path / "report.html"
    source = f"replay:{plain_bars(tmp_path)}"
    proc = start_up(data_dir, "--source", source, "--duration", "30s", "--report", str(report))
    summary = finish(proc, data_dir)
    fills = {t["track"]: t["fills"] for t in summary["tracks"]}
    assert fills.get("stable", 0) > 0 and fills.get("canary", 0) > 0, fills
    assert summary["dlq_total"] == 0, summary["dlq_by_reason"]
    assert {f["fill_model"] for f in summary["fills"]} == {"bar"}
    assert "bar-model" in report.read_text()
