"""`apex data synth`, `apex data download` and `apex features` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from apextrader.cli.main import app
from apextrader.quant.datafile import read_market_file, write_market_file
from apextrader.quant.indicators import FEATURE_COLUMNS, compute_features
from tests.market.fake_exchanges import FIXTURES, MINUTE, T0, FakeExchanges

runner = CliRunner()


def _one_red_line(result: object) -> str:
    out = result.output  # type: ignore[attr-defined]
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out
    return str(lines[0])


def test_synth_is_deterministic_and_writes_both_formats(tmp_path: Path) -> None:
    args = ["data", "synth", "--symbols", "BTC/USDT:USDT,SOL/USDT:USDT", "--bars", "500", "--seed", "4"]
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.csv"
    for path in (a, b, c):
        result = runner.invoke(app, [*args, "-o", str(path)])
        assert result.exit_code == 0, result.output
    fa, fb, fc = (read_market_file(p) for p in (a, b, c))
    assert fa.equals(fb) and fa.height == 1000
    assert fc["close"].to_list() == pytest.approx(fa["close"].to_list(), rel=1e-15)
    assert fa["timestamp"].to_list() == fc["timestamp"].to_list()


def test_synth_rejects_bad_symbols_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", "--symbols", "btc-usdt", "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2
    assert "btc-usdt" in _one_red_line(result)


def test_features_per_series_equal_the_library(tmp_path: Path) -> None:
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    assert runner.invoke(app, ["data", "synth", "--bars", "400", "-o", str(src)]).exit_code == 0
    result = runner.invoke(app, ["features", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    got = read_market_file(out)
    frame = read_market_file(src)
    for symbol in ("BTC/USDT:USDT", "ETH/USDT:USDT"):
        expected = compute_features(frame.filter(pl.col("symbol") == symbol)).select(FEATURE_COLUMNS)
        assert got.filter(pl.col("symbol") == symbol).select(FEATURE_COLUMNS).equals(expected)


def test_features_names_bad_input(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    write_market_file(
        pl.DataFrame(
            {
                "timestamp": [0, 60_000, 60_000],
                "open": [1.0, 1.0, 1.0],
                "high": [1.0, 1.0, 1.0],
                "low": [1.0, 1.0, 1.0],
                "close": [1.0, 1.0, 1.0],
                "volume": [1.0, 1.0, 1.0],
            }
        ).with_columns(pl.col("timestamp").cast(pl.Datetime("ms", "UTC"))),
        src,
    )
    result = runner.invoke(app, ["features", str(src), "-o", str(tmp_path / "o.parquet")])
    assert result.exit_code == 1
    line = _one_red_line(result)
    assert "duplicate timestamp at row 2" in line and str(src) in line
    missing = runner.invoke(app, ["features", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.parquet")])
    assert missing.exit_code == 1 and "no such file" in _one_red_line(missing)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def test_download_through_ccxt_from_recorded_binance(
    tmp_path: Path, fake_exchanges: FakeExchanges
) -> None:
    out = tmp_path / "btc.parquet"
    since, until = T0 + 10 * MINUTE, T0 + 100 * MINUTE
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["data", "download", "--exchange", "binance", "--symbol", "BTC/USDT:USDT", "--since", _iso(since),
         "--until", _iso(until), "-o", str(out), "--api-url", f"{fake_exchanges.base}/binance"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = read_market_file(out)
    recorded = json.loads((FIXTURES / "binance" / "klines_BTCUSDT.json").read_text())[10:100]
    assert frame.height == 90
    assert frame["close"].to_list() == [float(r[4]) for r in recorded]
    assert set(frame["exchange"]) == {"binance"} and set(frame["symbol"]) == {"BTC/USDT:USDT"}


def test_download_offline_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = runner.invoke(
        app,
        ["data", "download", "--exchange", "okx", "--symbol", "BTC/USDT", "--since", "2024-01-01",
         "-o", str(tmp_path / "x.parquet"), "--api-url", f"http://127.0.0.1:{port}"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot reach okx" in _one_red_line(result)
