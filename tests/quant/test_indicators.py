"""Features against TA-Lib, streaming against batch, no look-ahead, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
import talib

from apextrader.contracts.payloads import Bar
from apextrader.quant.indicators import (
    FEATURE_COLUMNS,
    InvalidMarketData,
    StreamingFeatures,
    compute_features,
)


def _series(seed: int, n: int, price: float, vol: float, flat_every: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rets = rng.standard_t(4, n) * vol
    if flat_every:  # runs of unchanged closes (RSI's zero-sum branch, zero-range bars)
        rets[(np.arange(n) // 50) % flat_every == 0] = 0.0
    close = price * np.exp(np.cumsum(rets))
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.normal(0, vol, n))
    if flat_every:
        wick[rets == 0.0] = 0.0
    high = np.maximum(open_, close) * (1 + wick)
    low = np.minimum(open_, close) * (1 - wick)
    volume = rng.gamma(2.0, 50.0, n)
    return pl.DataFrame(
        {
            "timestamp": pl.Series(np.arange(n, dtype=np.int64) * 60_000 + 1_700_000_000_000).cast(
                pl.Datetime("ms", "UTC")
            ),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


SERIES = {
    "btc_random_walk": _series(1, 20_000, 30_000.0, 0.002),
    "altcoin_low_price": _series(2, 20_000, 0.00042, 0.01),
    "calm_with_flat_runs": _series(3, 12_000, 1_850.0, 0.0004, flat_every=7),
    "volatile_trend": _series(4, 15_000, 95.0, 0.02),
}


def _talib(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    h, lo, c, v = (frame[k].to_numpy() for k in ("high", "low", "close", "volume"))
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    return {
        "atr14": talib.ATR(h, lo, c, 14),
        "rsi14": talib.RSI(c, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "ema20": talib.EMA(c, 20),
        "ema50": talib.EMA(c, 50),
        "ema200": talib.EMA(c, 200),
        "cvd": talib.AD(h, lo, c, v),
    }


@pytest.mark.parametrize("name", list(SERIES))
def test_equals_talib_including_warmup(name: str) -> None:
    frame = SERIES[name]
    ours = compute_features(frame)
    for column, expected in _talib(frame).items():
        got = ours[column].to_numpy()
        warm = np.isnan(expected)
        assert ours[column].null_count() == int(warm.sum()), column  # same warm-up, as nulls
        assert np.array_equal(np.isnan(got), warm), column
        diff = np.abs(got[~warm] - expected[~warm])
        assert diff.max() <= 1e-9, f"{name} {column}: max |diff| {diff.max()}"


def test_warmup_lengths_are_talibs() -> None:
    out = compute_features(SERIES["btc_random_walk"].head(300))
    first = {c: out[c].is_not_null().arg_true()[0] for c in FEATURE_COLUMNS}
    assert first == {
        "atr14": 14,
        "rsi14": 14,
        "macd": 33,
        "macd_signal": 33,
        "macd_hist": 33,
        "ema20": 19,
        "ema50": 49,
        "ema200": 199,
        "cvd": 0,
    }


def _bars(frame: pl.DataFrame) -> list[Bar]:
    return [
        Bar(
            open_time=row["timestamp"],
            open=row["open"],
            high=row["high"],
            low=row["low"],
            close=row["close"],
            volume=row["volume"],
            buy_volume=row.get("buy_volume"),
        )
        for row in frame.iter_rows(named=True)
    ]


@pytest.mark.parametrize("name", ["btc_random_walk", "calm_with_flat_runs"])
def test_streaming_equals_batch_bit_for_bit(name: str) -> None:
    frame = SERIES[name].head(3_000)
    batch = compute_features(frame).select(FEATURE_COLUMNS).to_numpy()
    state = StreamingFeatures()
    rows = [state.update(bar) for bar in _bars(frame)]
    streamed = np.array([[np.nan if x is None else x for x in r.values] for r in rows if r])
    assert streamed.shape == batch.shape
    assert np.array_equal(streamed, batch, equal_nan=True)  # exact, not approximately


def test_streaming_is_idempotent_by_bar_time_and_peek_does_not_mutate() -> None:
    bars = _bars(SERIES["volatile_trend"].head(260))
    state = StreamingFeatures()
    for bar in bars[:250]:
        state.update(bar)
    before = state.last_row
    peeked = state.peek(bars[250])
    assert state.last_row == before and state.bars == 250
    assert state.update(bars[249]) == before  # redelivered last bar: same row, no change
    assert state.update(bars[100]) is None  # an older bar: ignored
    assert state.bars == 250
    assert state.update(bars[250]) == peeked  # the intrabar peek equals the close


def test_no_look_ahead_by_truncation() -> None:
    frame = SERIES["volatile_trend"].head(1_500)
    full = compute_features(frame).select(FEATURE_COLUMNS).to_numpy()
    for k in (1, 14, 15, 26, 33, 34, 120, 199, 200, 201, 777, 1_499):
        part = compute_features(frame.head(k)).select(FEATURE_COLUMNS).to_numpy()
        assert np.array_equal(part, full[:k], equal_nan=True), k


def test_cvd_uses_trade_side_when_present_else_candle_approximation() -> None:
    frame = SERIES["btc_random_walk"].head(5)
    buy = [10.0, None, 0.0, 3.0, None]
    out = compute_features(frame.with_columns(buy_volume=pl.Series(buy, dtype=pl.Float64)))
    h, lo, c, v = (frame[k].to_numpy() for k in ("high", "low", "close", "volume"))
    clv = ((c - lo) - (h - c)) / (h - lo) * v
    expected_delta = [2 * b - v[i] if b is not None else clv[i] for i, b in enumerate(buy)]
    assert out["cvd"].to_list() == pytest.approx(np.cumsum(expected_delta).tolist(), abs=1e-9)


def _bad(frame: pl.DataFrame, match: str) -> None:
    with pytest.raises(InvalidMarketData, match=match):
        compute_features(frame)


def _set(frame: pl.DataFrame, column: str, row: int, value: object) -> pl.DataFrame:
    series = frame[column].clone()
    series[row] = value
    return frame.with_columns(series)


def test_bad_input_is_named() -> None:
    good = SERIES["btc_random_walk"].head(50)
    _bad(good.drop("volume"), "missing column.*volume")
    _bad(_set(good, "close", 7, float("nan")), "'close'.*nan at row 7")
    _bad(_set(good, "high", 3, None), "'high' is null at row 3")
    _bad(_set(good, "low", 9, -1.0), "'low'.*row 9.*must be > 0")
    _bad(_set(good, "volume", 2, -5.0), "'volume' is negative at row 2")
    dup = pl.concat([good.head(5), good.slice(4)])  # row 5 repeats row 4
    _bad(dup, "duplicate timestamp at row 5")
    with pytest.raises(InvalidMarketData) as info:
        compute_features(pl.concat([good.head(10), good.slice(5, 10)]))
    assert info.value.reason == "non_monotonic" and "decreasing timestamp at row 10" in str(info.value)
    _bad(good.with_columns(high=pl.col("low") * 0.5), "violates low <= open, close <= high")
    _bad(good.with_columns(close=pl.lit("x")), "'close' has type String")


def test_streaming_rejects_bad_buy_volume_without_touching_state() -> None:
    state = StreamingFeatures()
    bar = Bar(
        open_time=datetime(2026, 1, 1, tzinfo=UTC), open=1, high=2, low=1, close=2, volume=1, buy_volume=5
    )
    with pytest.raises(InvalidMarketData, match="buy_volume exceeds volume"):
        state.update(bar)
    assert state.bars == 0 and state.last_time_ms is None


def test_overflow_after_warm_up_is_null_not_a_value() -> None:
    # Closes near 1e307: the EMA(20) seed sum overflows to inf, the next EMA step is inf - inf =
    # NaN. The output must still be null exactly where the value is NaN (the slow path), not only
    # during the warm-up (the fast path, taken when the final state is finite).
    frame = SERIES["btc_random_walk"].head(300)
    huge = frame.with_columns(pl.col(c) * 1e303 for c in ("open", "high", "low", "close"))
    out = compute_features(huge)
    ema20 = out["ema20"]
    assert ema20[19] == float("inf") and ema20.slice(20).null_count() == 280
    assert out["ema20"].null_count() == 19 + 280
    assert out["atr14"].null_count() == 14  # no sum of prices: finite, so unaffected
