"""`apex up --source replay:bars.parquet` with plain OHLCV bars (no book columns) trades: the paper
venue fills on the bar model, says so in each fill and in the report, and nothing dead-letters.
The same run checks that exchange keys in the user's environment reach only the execution agents."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from apextrader.contracts.pipeline import load_pipeline
from apextrader.quant.datafile import write_market_file
from apextrader.quant.synthetic import generate_long
from tests.e2e.apex_cli import PIPELINE, finish, start_up, wait_runtime

pytestmark = pytest.mark.slow

PLAIN = ["timestamp", "open", "high", "low", "close", "volume", "symbol", "exchange"]


def plain_bars(tmp: Path) -> Path:
    """A user's own history: the documented columns only, for every exchange of the example. The
    bars are the example's own market (its `source.regimes`, seed and timeframe), so a replay can
    show what the demo shows; book columns are left out."""
    spec = load_pipeline(PIPELINE).spec
    bars = generate_long(
        spec.symbols, 3000, seed=spec.source.seed, timeframe=spec.timeframe, structure=spec.source.regimes
    )
    frame = pl.concat([bars.with_columns(exchange=pl.lit(ex)) for ex in spec.exchanges])
    path = tmp / "bars.parquet"
    write_market_file(frame.select(PLAIN), path)
    return path


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_plain_bars_replay_trades_on_both_tracks_with_no_dead_letters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", "e2e-key-4c3b2a1f")
    monkeypatch.setenv("BINANCE_API_SECRET", "e2e-secret-9d8c7b6a")
    data_dir, report = tmp_path / "run", tmp_path / "report.html"
    source = f"replay:{plain_bars(tmp_path)}"
    proc = start_up(data_dir, "--source", source, "--duration", "30s", "--report", str(report))
    runtime = wait_runtime(data_dir, proc)
    keyed = {key for key, a in runtime["agents"].items() if "BINANCE_API_KEY" in environ_of(a["pid"])}
    assert keyed == {"execution-stable", "execution-canary"}, keyed
    summary = finish(proc, data_dir)
    fills = {t["track"]: t["fills"] for t in summary["tracks"]}
    assert fills.get("stable", 0) > 0 and fills.get("canary", 0) > 0, fills
    assert summary["dlq_total"] == 0, summary["dlq_by_reason"]
    assert {f["fill_model"] for f in summary["fills"]} == {"bar"}
    assert "bar-model" in report.read_text()
