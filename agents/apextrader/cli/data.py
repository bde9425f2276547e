"""`apex data synth` and `apex data download`: market data files (docs/conventions.md §5)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from apextrader.cli.errors import UsageError, console, friendly
from apextrader.contracts.payloads import Exchange
from apextrader.contracts.spec import SYMBOL_PATTERN

data_app = typer.Typer(
    name="data",
    help="Market data files: synthetic bars, or history downloaded through ccxt.",
    no_args_is_help=True,
)
_EXCHANGES: tuple[Exchange, ...] = ("binance", "bybit", "okx")


def _parse_time(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not an ISO 8601 date/time (e.g. 2024-01-01)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _output(path: Path) -> Path:
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"-o {path}: use a .parquet or .csv file name")
    return path


@data_app.command("synth")
@friendly
def synth(
    symbols: str = typer.Option(
        "BTC/USDT:USDT,ETH/USDT:USDT", "--symbols", help="Comma-separated ccxt symbols."
    ),
    bars: int = typer.Option(10_000, "--bars", min=1, max=50_000_000, help="Bars per symbol."),
    output: Path = typer.Option(..., "-o", "--output", help="FILE.parquet or FILE.csv"),
    seed: int = typer.Option(1, "--seed", help="Same seed, same market."),
    timeframe: str = typer.Option("1m", "--timeframe", help="1m, 5m, 1h, ..."),
    start: str = typer.Option("2025-01-01", "--start", help="Open time of the first bar (UTC)."),
) -> None:
    """Write seeded synthetic OHLCV (+ buy volume, funding, spread, depth, liquidations).

    Example: [bold]apex data synth --symbols BTC/USDT:USDT,ETH/USDT:USDT --bars 50000 -o data.parquet[/]
    """
    import re

    from apextrader.contracts.units import timeframe_seconds
    from apextrader.quant.datafile import write_market_file
    from apextrader.quant.synthetic import generate_long

    names = [s.strip() for s in symbols.split(",") if s.strip()]
    bad = [s for s in names if not re.match(SYMBOL_PATTERN, s)]
    if not names or bad:
        raise UsageError(f"--symbols: {', '.join(bad) or 'none given'}: use ccxt symbols like BTC/USDT:USDT")
    try:
        timeframe_seconds(timeframe)
    except ValueError as exc:
        raise UsageError(f"--timeframe: {exc}") from None
    _output(output)
    with console.status(f"generating {bars:,} bars x {len(names)} symbols"):
        frame = generate_long(
            names, bars, seed=seed, timeframe=timeframe, start=_parse_time(start, "--start")
        )
        write_market_file(frame, output)
    console.print(f"wrote {frame.height:,} rows ({len(names)} symbols) to {output}")


@data_app.command("download")
@friendly
def download(
    exchange: str = typer.Option(..., "--exchange", help="binance, bybit or okx."),
    symbol: str = typer.Option(..., "--symbol", help="ccxt symbol: BTC/USDT (spot) or BTC/USDT:USDT."),
    timeframe: str = typer.Option("1m", "--timeframe", help="1m, 5m, 1h, ..."),
    since: str = typer.Option(..., "--since", help="First bar (ISO 8601, UTC), e.g. 2024-01-01."),
    until: str = typer.Option(None, "--until", help="Stop before this time (default: now)."),
    output: Path = typer.Option(..., "-o", "--output", help="FILE.parquet or FILE.csv"),
    api_url: str = typer.Option(None, "--api-url", hidden=True, help="Send API calls to this host."),
) -> None:
    """Download closed OHLCV candles through ccxt (public data, no keys).

    Example (1-minute bars are the default):

    [bold]apex data download --exchange binance --symbol BTC/USDT --since 2024-01-01 -o btc.parquet[/]
    """
    from apextrader.contracts.units import timeframe_seconds
    from apextrader.market.download import DownloadError, download_ohlcv
    from apextrader.quant.datafile import write_market_file

    if exchange not in _EXCHANGES:
        raise UsageError(f"--exchange: {exchange!r} is not one of {', '.join(_EXCHANGES)}")
    try:
        tf_s = timeframe_seconds(timeframe)
    except ValueError as exc:
        raise UsageError(f"--timeframe: {exc}") from None
    _output(output)
    start = _parse_time(since, "--since")
    end = _parse_time(until, "--until") if until else datetime.now(UTC)
    if end <= start:
        raise UsageError("--until must be after --since")
    expected = int((end - start).total_seconds() // tf_s)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"{exchange} {symbol} {timeframe}", total=expected)
        try:
            frame = asyncio.run(
                download_ohlcv(
                    exchange,  # type: ignore[arg-type]
                    symbol,
                    timeframe,
                    int(start.timestamp() * 1000),
                    int(end.timestamp() * 1000),
                    api_url=api_url,
                    progress=lambda n: progress.advance(task, n),
                )
            )
        except DownloadError as exc:
            raise UsageError(str(exc), code=1) from None
    if frame.is_empty():
        raise UsageError(f"{exchange} returned no candles for {symbol} {timeframe} since {since}", code=1)
    write_market_file(frame, output)
    console.print(f"wrote {frame.height:,} candles to {output}")
