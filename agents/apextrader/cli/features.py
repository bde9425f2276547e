"""`apex features IN -o OUT`: the feature set on a market data file."""

from __future__ import annotations

from pathlib import Path

import typer

from apextrader.cli.errors import UsageError, console, friendly


@friendly
def features(
    input_file: Path = typer.Argument(
        ..., metavar="IN", help="Parquet or CSV with timestamp, open, high, low, close, volume."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="OUT.parquet or OUT.csv"),
) -> None:
    """Add atr14, rsi14, macd, macd_signal, macd_hist, ema20, ema50, ema200 and cvd (TA-Lib's values
    and warm-up); one series per (exchange, symbol) when the file has those columns.

    Example: [bold]apex features data.parquet -o features.parquet[/]
    """
    import polars as pl

    from apextrader.quant.datafile import read_market_file, write_market_file
    from apextrader.quant.indicators import compute_features
    from apextrader.quant.market_data import InvalidMarketData

    if output.suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"-o {output}: use a .parquet or .csv file name")
    try:
        frame = read_market_file(input_file)
        keys = [c for c in ("exchange", "symbol") if c in frame.columns]
        if not keys:
            result = compute_features(frame)
        else:
            parts = []
            for key, group in frame.group_by(keys, maintain_order=True):
                try:
                    parts.append(compute_features(group))
                except InvalidMarketData as exc:
                    raise InvalidMarketData(exc.reason, f"{'/'.join(map(str, key))}: {exc}") from None
            result = pl.concat(parts)
    except InvalidMarketData as exc:
        message = str(exc)
        raise UsageError(
            message if message.startswith(str(input_file)) else f"{input_file}: {message}", code=1
        ) from None
    write_market_file(result, output)
    console.print(f"wrote {result.height:,} rows with features to {output}")
