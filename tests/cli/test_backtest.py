"""`apex backtest` end to end through the CLI: files written as docs/backtest.md says, a
self-contained report, `--signals` equal to the engine, open positions listed (or closed with
`--close-at-end`), and one-line errors for bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from apextrader.cli.main import app
from apextrader.quant.backtest import BacktestConfig, run_backtest
from tests.quant.bars import random_bars, random_signals

PIPELINE = Path(__file__).resolve().parents[2] / "manifests" / "pipeline.yaml"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_walk_forward_writes_files_and_a_self_contained_report(tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "r.html"
    code, text = invoke("backtest", PIPELINE, "--synthetic", "--bars", "6000", "--walk-forward", "3",
                        "--out", out, "--report", report)  # fmt: skip
    assert code == 0, text
    stats = json.loads((out / "stats.json").read_text())
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor",
                "expectancy", "expectancy_se", "trades", "exposure", "folds"):  # fmt: skip
        assert key in stats
    assert len(stats["folds"]) == 3 * 2 * 2  # folds x symbols x strategies
    assert len(stats["verdicts"]) == 2 * 2 and stats["open_trades"] == 0  # folds close at their end
    for v in stats["verdicts"]:
        assert v["method"] == "oos-t-bonferroni" and v["trials"] == 4 and v["threshold"] > 0
        assert v["accepted"] == (
            v["trades"] >= 5 and v["statistic"] is not None and v["statistic"] > v["threshold"]
        )
    trades = pl.read_parquet(out / "trades.parquet")
    assert {"entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "fees", "pnl"} <= set(
        trades.columns
    )
    assert trades.height == stats["trades"]
    equity = pl.read_parquet(out / "equity.parquet")
    assert equity.columns == ["timestamp", "equity"]
    assert equity["equity"][-1] == pytest.approx(1e5 * (1 + stats["total_return"]))
    # out-of-sample only: the equity starts at the first fold's out-of-sample window
    assert equity["timestamp"][0].isoformat() == stats["folds"][0]["out_of_sample_start"]
    page = report.read_text()
    assert re.search(r"<script[^>]+src=", page) is None and "<link" not in page
    assert "Plotly" in page and "Walk-forward folds" in page and "Drawdown" in page
    assert "oos-t-bonferroni" in page and "threshold" in page


def test_open_positions_are_listed_or_closed_at_the_end(tmp_path: Path) -> None:
    bars = random_bars(400, seed=23)
    data = tmp_path / "b.parquet"
    bars.write_parquet(data)
    sig = pl.DataFrame({"timestamp": bars["timestamp"], "entry_long": np.arange(400) == 300})
    sig.write_parquet(tmp_path / "sig.parquet")
    for flag, status in (([], "open"), (["--close-at-end"], "closed")):
        out = tmp_path / status
        code, text = invoke("backtest", PIPELINE, "--data", data, "--signals", tmp_path / "sig.parquet",
                            "--out", out, *flag)  # fmt: skip
        assert code == 0, text
        trades = pl.read_parquet(out / "trades.parquet")
        stats = json.loads((out / "stats.json").read_text())
        assert trades["status"].to_list() == [status]
        assert (stats["trades"], stats["open_trades"]) == ((0, 1) if status == "open" else (1, 0))
        assert f"{stats['trades']} closed, {stats['open_trades']} open" in text


def test_signals_mode_equals_the_engine(tmp_path: Path) -> None:
    bars = random_bars(1500, seed=21)
    sig = random_signals(1500, seed=22).with_columns(timestamp=bars["timestamp"])
    data = tmp_path / "btc.csv"
    bars.with_columns(pl.col("timestamp").dt.epoch("ms")).write_csv(data)  # epoch ms in a CSV
    sig.drop("exit_short").write_parquet(tmp_path / "sig.parquet")  # a missing column means false
    code, text = invoke("backtest", PIPELINE, "--data", data, "--signals", tmp_path / "sig.parquet",
                        "--fees-bps", "4", "--slippage-bps", "3", "--capital", "5000", "--size-pct", "50",
                        "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, text
    expected = run_backtest(
        pl.concat([bars, sig.drop("timestamp", "exit_short")], how="horizontal"),
        BacktestConfig(fees_bps=4, slippage_bps=3, capital=5000, size_pct=0.5),
    )
    equity = pl.read_parquet(tmp_path / "o" / "equity.parquet")
    np.testing.assert_allclose(equity["equity"].to_numpy(), expected.equity["equity"].to_numpy(), rtol=1e-12)
    assert pl.read_parquet(tmp_path / "o" / "trades.parquet").height == expected.trades.height > 0


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda d: random_bars(0).write_csv(d / "x.csv"), ["--data", "{d}/x.csv"], "no rows"),
        (lambda d: random_bars(100).write_csv(d / "x.csv"), ["--data", "{d}/x.csv"], "need at least"),
        (lambda d: None, ["--data", "{d}/missing.csv"], "no such file"),
        (lambda d: None, ["--synthetic", "--bars", "500", "--walk-forward", "20"], "walk-forward needs"),
        (lambda d: random_bars(300).drop("close").write_csv(d / "x.csv"), ["--data", "{d}/x.csv"], "close"),
        (lambda d: None, ["--synthetic", "--data", "x.csv"], "exactly one of"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, make, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path)
    code, text = invoke("backtest", PIPELINE, *[a.format(d=tmp_path) for a in args], "--out", tmp_path / "o")
    assert code in (1, 2), text
    assert message in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text


def test_grid_with_no_valid_point_is_one_line(tmp_path: Path) -> None:
    doc = yaml.safe_load(PIPELINE.read_text())
    doc["spec"].setdefault("backtest", {})["grid"] = {"meanReversion": {"rsiLow": [60]}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, text = invoke(
        "backtest", path, "--synthetic", "--bars", "3000", "--walk-forward", "2", "--out", tmp_path
    )
    assert code == 1 and "no valid point" in text and len(text.strip().splitlines()) == 1, text


def test_help_cites_only_documents_in_the_repository() -> None:
    code, text = invoke("backtest", "--help")
    assert code == 0
    cited = set(re.findall(r"[\w./-]+\.md", text))
    assert cited, "the help points at the backtest docs"
    root = PIPELINE.parents[1]
    assert all((root / c).is_file() for c in cited), cited
