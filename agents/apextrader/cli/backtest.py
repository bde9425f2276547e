"""`apex backtest FILE (--data PATH|--synthetic) [--signals PATH] [--walk-forward N] --out DIR
[--report FILE] [--close-at-end]`: strategies, walk-forward or external signals through the backtest
engine (docs/backtest.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from apextrader.cli.errors import UsageError, console, friendly
from apextrader.contracts import PipelineError, TradingPipelineSpec, load_pipeline

if TYPE_CHECKING:  # the engine (numba) loads only when a backtest runs, not on every `apex` start
    import polars as pl

    from apextrader.quant.backtest.runner import RunOutput

SYNTHETIC_BARS = 20_000


@friendly
def backtest(
    file: Path = typer.Argument(
        ..., help="A TradingPipeline YAML file (strategies, risk, backtest).", metavar="FILE"
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="OHLCV Parquet/CSV: timestamp, open, high, low, close, volume (docs/backtest.md).",
    ),
    synthetic: bool = typer.Option(
        False, "--synthetic", help="Generate seeded bars (spec.source: seed, model, regimes)."
    ),
    bars: int = typer.Option(SYNTHETIC_BARS, "--bars", min=1, help="Bars per symbol with --synthetic."),
    signals: Path | None = typer.Option(
        None, "--signals", help="Backtest entry/exit columns from this file."
    ),
    walk_forward: int | None = typer.Option(
        None, "--walk-forward", min=1, max=100, help="Walk-forward folds."
    ),
    out: Path = typer.Option(..., "--out", help="Directory for stats.json, trades.parquet, equity.parquet."),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report here."),
    fees_bps: float = typer.Option(5.0, "--fees-bps", min=0, help="--signals: fee per fill, bps."),
    slippage_bps: float = typer.Option(
        2.0, "--slippage-bps", min=0, help="--signals: slippage per fill, bps."
    ),
    capital: float | None = typer.Option(None, "--capital", help="--signals: starting cash (default: spec)."),
    size_pct: float = typer.Option(100.0, "--size-pct", help="--signals: % of cash per entry (100 = all)."),
    close_at_end: bool = typer.Option(
        False,
        "--close-at-end",
        help="Close positions still open at the last bar (at its close, with slippage and fees) "
        "instead of listing them as open trades (status open, unrealised PnL).",
    ),
) -> None:
    """Backtest the spec's strategies (or external signals) and write stats, trades and equity.

    Signals fill at the next bar's open, fees and slippage against the trader. A position still
    open at the end is a trade with status open (unless --close-at-end). --walk-forward accepts a
    strategy only when its out-of-sample t-statistic beats the threshold corrected for the grid's
    trials at backtest.significance. Every convention and file column: docs/backtest.md.

    Example: [bold]apex backtest manifests/pipeline.yaml --synthetic --walk-forward 5 --out out/bt
    --report out/bt.html[/]
    """
    from apextrader.quant.backtest.data import attach_signals, read_bars, read_signals
    from apextrader.quant.backtest.engine import BacktestConfig
    from apextrader.quant.backtest.runner import run_signals
    from apextrader.quant.market_data import InvalidMarketData
    from apextrader.quant.walkforward import WalkForwardError

    if (data is None) == (not synthetic):
        raise UsageError("give exactly one of --data PATH or --synthetic")
    if signals is not None and walk_forward is not None:
        raise UsageError("--signals and --walk-forward cannot be combined (signals have no parameters)")
    if not 0 < size_pct <= 100:
        raise UsageError("--size-pct must be in (0, 100]")
    try:
        pipeline = load_pipeline(file)
    except PipelineError as exc:
        raise UsageError(f"{file}: {exc.errors[0]}", code=1) from None
    spec = pipeline.spec
    try:
        if synthetic:
            from apextrader.quant.synthetic import generate

            frames = generate(
                spec.symbols, bars, seed=spec.source.seed, timeframe=spec.timeframe,
                structure=spec.source.structure(),
            )  # fmt: skip
        else:
            assert data is not None
            frames = read_bars(data)
        if signals is not None:
            if len(frames) != 1:
                raise UsageError(
                    f"--signals needs data of one symbol, got {len(frames)}: {', '.join(frames)}"
                )
            symbol, frame = next(iter(frames.items()))
            cfg = BacktestConfig(
                capital=capital or spec.capital.amount,
                fees_bps=fees_bps,
                slippage_bps=slippage_bps,
                size_pct=size_pct / 100.0,
                close_at_end=close_at_end,
            )
            output = run_signals(attach_signals(frame, read_signals(signals)), cfg, symbol)
        else:
            output = _run_strategies(frames, spec, walk_forward, close_at_end)
    except (InvalidMarketData, WalkForwardError) as exc:
        raise UsageError(str(exc), code=1) from None
    paths = output.write(out)
    if report is not None:
        from apextrader.report import write_report
        from apextrader.report.backtest import backtest_page

        paths.append(write_report(report, backtest_page(output, f"Backtest: {pipeline.name}")))
    _summary(output, paths)


def _run_strategies(
    frames: dict[str, pl.DataFrame], spec: TradingPipelineSpec, walk_forward: int | None, close_at_end: bool
) -> RunOutput:
    from apextrader.quant.backtest.runner import run_plain, run_walk_forward
    from apextrader.quant.strategies import STRATEGIES, params_for
    from apextrader.quant.walkforward import expand_grid

    names = [n for n in STRATEGIES if params_for(spec, n).enabled]
    if walk_forward is None:
        total = len(names) * len(frames)
    else:
        key = {"breakout": "breakout", "mean_reversion": "meanReversion"}
        total = sum(
            len(expand_grid(STRATEGIES[n], params_for(spec, n), spec.backtest.grid.get(key[n], {})))
            for n in names
        ) * len(frames)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("walk-forward" if walk_forward else "backtest", total=total)

        def advance(n: int) -> None:
            progress.advance(task, n)

        if walk_forward is None:
            return run_plain(frames, spec, advance, close_at_end)
        return run_walk_forward(frames, spec, walk_forward, advance)


def _summary(output: RunOutput, paths: list[Path]) -> None:
    s = output.stats

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2%}"

    console.print(
        f"trades {s.trades} closed, {s.open_trades} open  total return {pct(s.total_return)}  "
        f"max drawdown {pct(s.max_drawdown)}  expectancy {pct(s.expectancy)}  "
        f"sharpe {'n/a' if s.sharpe is None else f'{s.sharpe:.2f}'}"
    )
    for v in s.verdicts:
        mark = "[green]PASS[/]" if v["accepted"] else "[red]FAIL[/]"
        console.print(f"{mark} {v['symbol']} {v['strategy']}: {v['reason']}")
    for p in paths:
        console.print(f"wrote {p}")
