"""Live agents run the quant kernels as plain Python (`APEX_JIT=0`, no numba in the process); the
batch CLI runs them compiled. Both must give the same bits: features streamed in a
plain-Python process equal the compiled batch, and so do the live strategy signals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from apextrader.contracts.spec import BreakoutParams, MeanReversionParams
from apextrader.quant.indicators import FEATURE_COLUMNS, compute_features
from apextrader.quant.strategies import STRATEGIES, FeatureArrays, signals
from tests.quant.bars import random_bars

ROOT = Path(__file__).resolve().parents[2]

# Runs in a child process without numba: stream the bars through StreamingFeatures and the live
# strategies, save what they produced.
_CHILD = """
import sys
import numpy as np, polars as pl
from apextrader.contracts.payloads import Bar
from apextrader.quant import jit
from apextrader.quant.indicators import FEATURE_COLUMNS, StreamingFeatures
from apextrader.quant.strategies import STRATEGIES, RollingStrategy
from apextrader.contracts.spec import BreakoutParams, MeanReversionParams

PARAMS = (("breakout", BreakoutParams()),
          ("mean_reversion", MeanReversionParams(rsi_low=40, rsi_high=60, trend_filter=False)))
assert not jit.ENABLED
bars = pl.read_parquet(sys.argv[1])
state = StreamingFeatures()
rows = []
for r in bars.iter_rows(named=True):
    row = state.update(Bar(open_time=r["timestamp"], open=r["open"], high=r["high"], low=r["low"],
                           close=r["close"], volume=r["volume"]))
    rows.append(row)
feats = pl.DataFrame([row.as_dict() for row in rows], schema={c: pl.Float64 for c in FEATURE_COLUMNS})
feats.write_parquet(sys.argv[2])
out = {}
frame = pl.read_parquet(sys.argv[3])
ts = frame["timestamp"].dt.epoch("ms").to_list()
for name, params in PARAMS:
    live = RollingStrategy(STRATEGIES[name], params)
    side = np.zeros(frame.height, dtype=np.int8)
    strength = np.zeros(frame.height)
    for t, row in enumerate(frame.iter_rows(named=True)):
        sig = live.update(ts[t], row)
        if sig is not None:
            side[t], strength[t] = sig.side, sig.strength
    out[name + "_side"], out[name + "_strength"] = side, strength
np.savez(sys.argv[4], **out)
assert "numba" not in sys.modules, "numba was imported in plain-Python mode"
"""


def test_plain_python_streaming_equals_compiled_batch(tmp_path: Path) -> None:
    bars = random_bars(3000, seed=23)
    batch = compute_features(bars)
    bars.write_parquet(tmp_path / "bars.parquet")
    batch.write_parquet(tmp_path / "features.parquet")
    env = {**os.environ, "APEX_JIT": "0", "PYTHONPATH": f"{ROOT / 'agents'}{os.pathsep}{ROOT}"}
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "bars.parquet"), str(tmp_path / "stream.parquet"),
         str(tmp_path / "features.parquet"), str(tmp_path / "signals.npz")],
        env=env, check=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    streamed = pl.read_parquet(tmp_path / "stream.parquet")
    for col in FEATURE_COLUMNS:
        want = batch[col].fill_null(np.nan).to_numpy()
        got = streamed[col].fill_null(np.nan).to_numpy()
        assert np.array_equal(want, got, equal_nan=True), col  # bit for bit, nulls in the same places
    assert batch["ema200"].drop_nulls().len() > 2000  # the comparison covers warmed-up values

    live = np.load(tmp_path / "signals.npz")
    arrays = FeatureArrays.from_frame(batch)
    for name, params in (
        ("breakout", BreakoutParams()),
        ("mean_reversion", MeanReversionParams(rsi_low=40, rsi_high=60, trend_filter=False)),
    ):
        strategy = STRATEGIES[name]  # type: ignore[index]
        want = signals(strategy, arrays, params)
        assert np.array_equal(live[name + "_side"], want.side), name
        assert np.array_equal(live[name + "_strength"], want.strength), name
        assert (want.side != 0).sum() >= 5, name  # real signals were compared


# The live backtester's walk-forward record in a plain-Python child (what `apex agent backtester`
# runs, docs/performance.md): every track's verdict printed as JSON.
_WALK_FORWARD_CHILD = """
import json, sys
import numpy as np, polars as pl
from apextrader.contracts import load_pipeline, track_spec
from apextrader.quant import jit
from apextrader.quant.live import BarBuffer, bars_needed, walk_forward_record
from apextrader.quant.strategies import STRATEGIES
from apextrader.quant.strategies.base import INPUT_COLUMNS

assert not jit.ENABLED
spec = load_pipeline("manifests/pipeline.yaml").spec
frame = pl.read_parquet(sys.argv[1])
out = []
for track in ("stable", "canary"):
    s = track_spec(spec, track)
    buffer = BarBuffer(bars_needed(s))
    ts = frame["timestamp"].dt.epoch("ms").to_list()
    for t, row in zip(ts, frame.select(INPUT_COLUMNS).iter_rows(named=True)):
        buffer.add(t, row)
    for name in STRATEGIES:
        v = walk_forward_record(buffer, s, name).verdict
        out.append([v.accepted, v.expectancy, v.expectancy_se, v.trades, v.statistic, v.threshold])
print(json.dumps(out))
assert "numba" not in sys.modules
"""


def test_plain_python_walk_forward_equals_compiled(tmp_path: Path) -> None:
    """The backtester's live gate runs uncompiled: the same verdicts, bit for bit, as compiled."""
    from apextrader.contracts import load_pipeline, track_spec
    from apextrader.quant.live import BarBuffer, bars_needed, walk_forward_record
    from apextrader.quant.strategies.base import INPUT_COLUMNS

    frame = compute_features(random_bars(900, seed=5, ar=0.2))
    frame.write_parquet(tmp_path / "features.parquet")
    env = {**os.environ, "APEX_JIT": "0", "PYTHONPATH": f"{ROOT / 'agents'}{os.pathsep}{ROOT}"}
    child = subprocess.run(
        [sys.executable, "-c", _WALK_FORWARD_CHILD, str(tmp_path / "features.parquet")],
        env=env, check=True, cwd=ROOT, timeout=300, capture_output=True, text=True,
    )  # fmt: skip
    spec = load_pipeline(ROOT / "manifests/pipeline.yaml").spec
    want, trades = [], 0
    for track in ("stable", "canary"):
        s = track_spec(spec, track)  # type: ignore[arg-type]
        buffer = BarBuffer(bars_needed(s))
        ts = frame["timestamp"].dt.epoch("ms").to_list()
        for t, row in zip(ts, frame.select(INPUT_COLUMNS).iter_rows(named=True), strict=True):
            buffer.add(t, row)
        for name in STRATEGIES:
            record = walk_forward_record(buffer, s, name)  # type: ignore[arg-type]
            assert record is not None
            v = record.verdict
            want.append([v.accepted, v.expectancy, v.expectancy_se, v.trades, v.statistic, v.threshold])
            trades += v.trades
    assert json.loads(child.stdout) == want  # floats through JSON's repr round-trip exactly
    assert trades >= 10  # real trades were compared
