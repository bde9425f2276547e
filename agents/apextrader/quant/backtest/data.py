"""Reading market data and signal files (docs/conventions.md §5) into polars frames for the engine."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from apextrader.quant.backtest.engine import SignalColumns
from apextrader.quant.market_data import InvalidMarketData


def read_table(path: Path) -> pl.DataFrame:
    """A Parquet or CSV file (by suffix; anything else is tried as CSV)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pl.read_parquet(path)
        return pl.read_csv(path, try_parse_dates=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InvalidMarketData("unreadable", f"{path}: cannot read ({exc.__class__.__name__})") from None


def normalise_timestamps(frame: pl.DataFrame) -> pl.DataFrame:
    """`timestamp` as Datetime(ms, UTC) from epoch milliseconds, ISO 8601 text or a datetime."""
    if "timestamp" not in frame.columns:
        raise InvalidMarketData("missing_column", "missing column 'timestamp'")
    col = frame["timestamp"]
    if col.dtype.is_integer() or col.dtype.is_float():
        ts = col.cast(pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    elif col.dtype == pl.String:
        try:
            ts = col.str.to_datetime(time_unit="ms", time_zone="UTC")
        except pl.exceptions.PolarsError:
            raise InvalidMarketData("invalid", "column 'timestamp': not ISO 8601 text") from None
    elif isinstance(col.dtype, pl.Datetime):
        ts = col if col.dtype.time_zone else col.dt.replace_time_zone("UTC")
        ts = ts.dt.convert_time_zone("UTC").dt.cast_time_unit("ms")
    else:
        raise InvalidMarketData("invalid", f"column 'timestamp' has type {col.dtype}")
    return frame.with_columns(ts.alias("timestamp"))


def read_bars(path: Path) -> dict[str, pl.DataFrame]:
    """Bars per symbol (one key, the file's stem, when there is no `symbol` column), time-sorted."""
    frame = normalise_timestamps(read_table(path))
    if frame.is_empty():
        raise InvalidMarketData("empty", f"{path}: no rows")
    if "symbol" not in frame.columns:
        return {path.stem: frame.sort("timestamp")}
    return {
        str(key[0]): part.drop("symbol").sort("timestamp")
        for key, part in frame.partition_by("symbol", as_dict=True, maintain_order=True).items()
    }


def read_signals(path: Path) -> pl.DataFrame:
    """`timestamp` plus any of the four boolean signal columns (missing = false)."""
    frame = normalise_timestamps(read_table(path))
    present = [c for c in SignalColumns.BOOLEANS if c in frame.columns]
    if not present:
        raise InvalidMarketData(
            "missing_column", f"{path}: no signal column (need any of {', '.join(SignalColumns.BOOLEANS)})"
        )
    out = frame.select("timestamp", *present)
    for c in present:
        if out[c].dtype != pl.Boolean:
            try:
                out = out.with_columns(pl.col(c).cast(pl.Boolean))
            except pl.exceptions.PolarsError:
                raise InvalidMarketData("invalid", f"{path}: column '{c}' is not boolean") from None
    if out["timestamp"].is_duplicated().any():
        raise InvalidMarketData("duplicate_timestamp", f"{path}: duplicate timestamps")
    return out


def attach_signals(bars: pl.DataFrame, sig: pl.DataFrame) -> pl.DataFrame:
    """Signals joined onto the bars by timestamp; a signal at a time with no bar is an error."""
    unknown = sig.join(bars.select("timestamp"), on="timestamp", how="anti")
    if unknown.height:
        first = unknown["timestamp"][0]
        raise InvalidMarketData(
            "invalid", f"signals: {unknown.height} timestamp(s) match no bar of the data (first {first})"
        )
    cols = [c for c in SignalColumns.BOOLEANS if c in bars.columns]
    return (
        bars.drop(cols)
        .join(sig, on="timestamp", how="left")
        .with_columns([pl.col(c).fill_null(False) for c in SignalColumns.BOOLEANS if c in sig.columns])
    )
