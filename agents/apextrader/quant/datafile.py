"""Market data files (docs/conventions.md §5): Parquet or CSV, `timestamp` as UTC datetime, epoch ms or ISO 8601."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from apextrader.quant.market_data import InvalidMarketData

SUFFIXES = (".parquet", ".csv")


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidMarketData("invalid", f"{path}: use a .parquet or .csv file")
    return suffix


def normalise_timestamps(frame: pl.DataFrame) -> pl.DataFrame:
    """`timestamp` as Datetime(ms, UTC) whether it came as datetime, epoch ms or ISO 8601 text."""
    if "timestamp" not in frame.columns:
        raise InvalidMarketData("missing_column", "missing column timestamp")
    col = frame.get_column("timestamp")
    if isinstance(col.dtype, pl.Datetime):
        ts = col.dt.convert_time_zone("UTC") if col.dtype.time_zone else col.dt.replace_time_zone("UTC")
    elif col.dtype.is_integer():
        ts = col.cast(pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    elif col.dtype == pl.String:
        try:
            ts = col.str.to_datetime(time_zone="UTC", strict=True)
        except pl.exceptions.PolarsError as exc:
            raise InvalidMarketData(
                "invalid", f"column 'timestamp': not ISO 8601 or epoch ms ({exc})"
            ) from None
    else:
        raise InvalidMarketData("invalid", f"column 'timestamp' has type {col.dtype}")
    return frame.with_columns(ts.dt.cast_time_unit("ms").alias("timestamp"))


def read_market_file(path: str | Path) -> pl.DataFrame:
    p = Path(path)
    fmt = _format(p)
    if not p.is_file():
        raise InvalidMarketData("invalid", f"{p}: no such file")
    try:
        frame = pl.read_parquet(p) if fmt == ".parquet" else pl.read_csv(p, try_parse_dates=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InvalidMarketData("invalid", f"{p}: cannot read ({exc})") from None
    return normalise_timestamps(frame)


def write_market_file(frame: pl.DataFrame, path: str | Path) -> None:
    p = Path(path)
    fmt = _format(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == ".parquet":
        frame.write_parquet(p)
    else:
        frame.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")).write_csv(p)
