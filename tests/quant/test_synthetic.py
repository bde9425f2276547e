"""The synthetic market: deterministic, valid, and with the stylised facts it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from apextrader.contracts.spec import RegimesSpec, TradingPipelineSpec
from apextrader.quant.indicators import compute_features
from apextrader.quant.market_data import validate_ohlcv
from apextrader.quant.synthetic import FRAME_COLUMNS, SyntheticMarket, generate, generate_long

SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]


@pytest.fixture(scope="module")
def long_btc() -> pl.DataFrame:
    return generate(["BTC/USDT:USDT"], 120_000, seed=7)["BTC/USDT:USDT"]


def test_deterministic_per_seed_and_independent_of_other_symbols() -> None:
    a = generate(SYMBOLS, 3_000, seed=3)
    b = generate(SYMBOLS, 3_000, seed=3)
    c = generate(SYMBOLS, 3_000, seed=4)
    alone = generate(["ETH/USDT:USDT"], 3_000, seed=3)
    for s in SYMBOLS:
        assert a[s].equals(b[s])
        assert not a[s]["close"].equals(c[s]["close"])
    assert alone["ETH/USDT:USDT"].equals(a["ETH/USDT:USDT"])


def test_bar_by_bar_iterator_yields_the_batch_frames() -> None:
    batch = generate(SYMBOLS, 2_100, seed=5)
    market = SyntheticMarket(SYMBOLS, seed=5)
    bars = [market.next_bars() for _ in range(2_100)]  # crosses two chunk boundaries
    for s in SYMBOLS:
        closes = np.array([b[s].close for b in bars])
        assert np.array_equal(closes, batch[s]["close"].to_numpy())
        path_end = np.array([b[s].path[-1] for b in bars])
        assert np.array_equal(path_end, closes)  # the intrabar path ends at the close
    ts = [b["BTC/USDT:USDT"].timestamp for b in bars[:2]]
    assert (ts[1] - ts[0]).total_seconds() == 60


def test_frames_are_valid_market_data(long_btc: pl.DataFrame) -> None:
    validate_ohlcv(long_btc)  # raises on any inconsistency
    assert long_btc.columns == list(FRAME_COLUMNS)
    assert (long_btc["buy_volume"] <= long_btc["volume"]).all()
    assert (long_btc["funding_rate"].abs() <= 0.0075).all()
    compute_features(long_btc)  # usable as-is
    wide = generate_long(SYMBOLS, 10, seed=1, timeframe="1h")
    assert wide.height == 20 and wide["symbol"].unique().sort().to_list() == SYMBOLS


def test_stylised_facts(long_btc: pl.DataFrame) -> None:
    close = long_btc["close"].to_numpy()
    r = np.diff(np.log(close))
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurtosis > 5, "fat tails (jumps, regimes)"
    a = np.abs(r)
    assert np.corrcoef(a[:-1], a[1:])[0, 1] > 0.1, "volatility clusters"
    assert abs(np.corrcoef(r[:-1], r[1:])[0, 1]) < 0.02, "returns are not predictable"
    hours = long_btc["timestamp"].dt.hour().to_numpy()[1:]
    by_hour = np.array([a[hours == h].mean() for h in range(24)])
    assert by_hour.max() / by_hour.min() > 1.3, "intraday seasonality"
    vol = pl.Series(a).rolling_mean(60).to_numpy()
    spread = long_btc["spread_bps"].to_numpy()[1:]
    depth = long_btc["depth"].to_numpy()[1:]
    ok = ~np.isnan(vol)
    assert np.corrcoef(vol[ok], spread[ok])[0, 1] > 0.3, "spread widens with volatility"
    assert np.corrcoef(vol[ok], np.log(depth[ok]))[0, 1] < -0.3, "depth thins with volatility"
    funding = long_btc["funding_rate"].to_numpy()
    assert np.ptp(funding[:10_000]) > 1e-4 and abs(funding[-1] - funding[0]) > 0, "funding drifts"
    liq = (long_btc["liq_long"] + long_btc["liq_short"]).to_numpy()[1:]
    big = a > np.quantile(a, 0.999)
    assert liq[big].mean() > 20 * liq[~big].mean(), "liquidations cluster in large moves"
    buy_share = (long_btc["buy_volume"] / long_btc["volume"]).to_numpy()[1:]
    assert np.corrcoef(buy_share, r)[0, 1] > 0.3, "taker flow leans with the move"


def test_no_drift_across_seeds() -> None:
    """Never tuned to make a strategy win: the mean log return is indistinguishable from zero."""
    totals = [
        np.log(f["close"][-1] / f["open"][0])
        for seed in range(12)
        for f in generate(["SOL/USDT:USDT"], 5_000, seed=seed).values()
    ]
    t = np.mean(totals) / (np.std(totals, ddof=1) / np.sqrt(len(totals)))
    assert abs(t) < 3


def test_unknown_timeframe_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        SyntheticMarket(SYMBOLS, timeframe="2m")


# -- source.model: regimes ---------------------------------------------------------------------
def _regimes(**kinds: dict[str, float]) -> RegimesSpec:
    shares = {"trend": {"share": 0}, "meanReversion": {"share": 0}, "random": {"share": 0}}
    return RegimesSpec.model_validate({"meanBars": 400, **shares, **kinds})


def _variance_ratio(frame: pl.DataFrame, q: int) -> float:
    """Var(q-bar log return) / (q x Var(1-bar)): 1 for a martingale, > 1 for trend persistence, < 1
    for mean reversion (Lo & MacKinlay's statistic, which knows nothing of our strategies)."""
    x = np.log(frame["close"].to_numpy())
    r1, rq = np.diff(x), x[q:] - x[:-q]
    return float(rq.var() / (q * r1.var()))


def test_regimes_plant_the_structure_they_document() -> None:
    trend = _regimes(trend={"share": 1, "drift": 0.2})
    reversion = _regimes(meanReversion={"share": 1, "pull": 0.1})
    ratios = {}
    for name, structure in (("martingale", None), ("trend", trend), ("reversion", reversion)):
        frames = generate(["ETH/USDT:USDT"], 20_000, seed=11, timeframe="15m", structure=structure)
        ratios[name] = _variance_ratio(frames["ETH/USDT:USDT"], 20)
    assert 0.8 < ratios["martingale"] < 1.2
    # a drift of d bar-volatilities adds about q d^2 to the ratio (jumps dilute it): 1 + 20 x 0.04
    assert ratios["trend"] > 1.3 and ratios["reversion"] < 0.6, ratios


def test_random_regimes_only_are_the_martingale_and_default_is_untouched() -> None:
    plain = generate(SYMBOLS, 2_000, seed=3)
    none = generate(SYMBOLS, 2_000, seed=3, structure=None)
    random_only = generate(SYMBOLS, 2_000, seed=3, structure=_regimes(random={"share": 1}))
    for s in SYMBOLS:
        assert plain[s].equals(none[s])  # the martingale's own draws are not consumed
        np.testing.assert_allclose(
            random_only[s]["close"].to_numpy(), plain[s]["close"].to_numpy(), rtol=1e-9
        )


def test_regimes_are_deterministic_and_the_iterator_equals_the_frames() -> None:
    structure = _regimes(trend={"share": 1, "drift": 0.3}, meanReversion={"share": 1, "pull": 0.05})
    batch = generate(SYMBOLS, 2_100, seed=5, structure=structure)
    again = generate(SYMBOLS, 2_100, seed=5, structure=structure)
    alone = generate(["ETH/USDT:USDT"], 2_100, seed=5, structure=structure)
    market = SyntheticMarket(SYMBOLS, seed=5, structure=structure)
    bars = [market.next_bars() for _ in range(2_100)]  # crosses two chunk boundaries
    for s in SYMBOLS:
        assert batch[s].equals(again[s])
        assert np.array_equal(np.array([b[s].close for b in bars]), batch[s]["close"].to_numpy())
        validate_ohlcv(batch[s])
    assert alone["ETH/USDT:USDT"].equals(batch["ETH/USDT:USDT"])


def test_source_model_is_synthetic_only_and_needs_regimes_model() -> None:
    # ignored off synthetic, not refused: `apex up --source replay:PATH` keeps the example's model
    replay = {"kind": "replay", "path": "x.parquet", "model": "regimes"}
    assert (
        TradingPipelineSpec.model_validate(
            {"symbols": ["BTC/USDT:USDT"], "source": replay}
        ).source.structure()
        is None
    )
    base = {"symbols": ["BTC/USDT:USDT"]}
    spec = TradingPipelineSpec.model_validate({**base, "source": {"model": "regimes"}})
    assert (
        spec.source.structure() == RegimesSpec()
        and TradingPipelineSpec.model_validate(base).source.structure() is None
    )
    for source, message in (
        ({"regimes": {"meanBars": 100}}, "needs source.model: regimes"),
        ({"model": "regimes", "regimes": {"trend": {"share": 0}, "meanReversion": {"share": 0},
                                          "random": {"share": 0}}}, "share > 0"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            TradingPipelineSpec.model_validate({**base, "source": source})


_CHILD = """
import sys
from apextrader.contracts.spec import RegimesSpec
from apextrader.quant import jit
from apextrader.quant.synthetic import generate
assert not jit.ENABLED
structure = RegimesSpec.model_validate_json(sys.argv[2])
generate(["BTC/USDT:USDT"], 1500, seed=9, structure=structure)["BTC/USDT:USDT"].write_parquet(sys.argv[1])
"""


def test_scanner_plain_python_bars_equal_the_compiled_generator(tmp_path: Path) -> None:
    """The scanner runs without numba (APEX_JIT=0); `apex backtest --synthetic` compiles: same bars."""
    structure = _regimes(trend={"share": 2, "drift": 0.3}, meanReversion={"share": 1, "pull": 0.1})
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "APEX_JIT": "0", "PYTHONPATH": f"{root / 'agents'}{os.pathsep}{root}"}
    out = tmp_path / "plain.parquet"
    subprocess.run([sys.executable, "-c", _CHILD, str(out), structure.model_dump_json()],
                   env=env, check=True, cwd=root, timeout=300)  # fmt: skip
    compiled = generate(["BTC/USDT:USDT"], 1500, seed=9, structure=structure)["BTC/USDT:USDT"]
    assert pl.read_parquet(out).equals(compiled)
