"""The `replay` source: bars from a Parquet/CSV file (docs/conventions.md §5), paced by their own timestamps.

Rows carry optional `symbol` and `exchange` columns; without them every row belongs to the spec's
first symbol / first exchange. Optional columns: `buy_volume`, `funding_rate`, `spread_bps` and
`depth` (a book is built from them, as `apex data synth` writes them), `liq_long`/`liq_short`.
The first `backfill_bars` bars of every series are published as backfill; the rest follow at
`speed` times the recorded pace, or as fast as the bus takes them (`speed=None`). The file is
validated up front: a bad file fails at start with the column and row named.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import polars as pl

from apextrader.contracts.payloads import Exchange, MarketSnapshot
from apextrader.contracts.units import timeframe_seconds
from apextrader.market.snapshots import bar_close_time, liquidations, snapshot, synthetic_book
from apextrader.market.sources.base import Batch, MarketSource, SourceHealth
from apextrader.market.sources.pacing import ticks
from apextrader.quant.datafile import read_market_file
from apextrader.quant.market_data import InvalidMarketData, validate_ohlcv

BATCH_ROWS = 500


class ReplaySource(MarketSource):
    kind = "replay"

    def __init__(
        self,
        path: str | Path,
        *,
        exchanges: list[Exchange],
        symbols: list[str],
        timeframe: str = "1m",
        backfill_bars: int = 600,
        hz: float = 2.0,
        speed: float | None = None,
        depth_levels: int = 10,
    ) -> None:
        self.path, self.exchanges, self.symbols, self.timeframe = Path(path), exchanges, symbols, timeframe
        self.backfill_bars, self.hz, self.speed, self.depth_levels = backfill_bars, hz, speed, depth_levels
        self.health = SourceHealth(exchanges)
        self._rows: list[dict[str, Any]] = []
        self._backfill_count = 0
        self.finished = False

    async def open(self) -> None:
        frame = read_market_file(self.path)
        if "symbol" not in frame.columns:
            frame = frame.with_columns(symbol=pl.lit(self.symbols[0]))
        if "exchange" not in frame.columns:
            frame = frame.with_columns(exchange=pl.lit(self.exchanges[0]))
        frame = frame.filter(pl.col("symbol").is_in(self.symbols) & pl.col("exchange").is_in(self.exchanges))
        if frame.is_empty():
            raise InvalidMarketData(
                "invalid", f"{self.path}: no rows for symbols {self.symbols} on exchanges {self.exchanges}"
            )
        parts = []
        for (_, _), group in frame.group_by(["exchange", "symbol"], maintain_order=True):
            validate_ohlcv(group)
            parts.append(group.with_columns(_n=pl.int_range(pl.len())))
        ordered = pl.concat(parts, how="diagonal_relaxed").sort(["timestamp", "exchange", "symbol"])
        self._rows = ordered.to_dicts()
        self._backfill_count = ordered.filter(pl.col("_n") < self.backfill_bars).height

    def _snapshot(self, row: dict[str, Any], *, backfill: bool, seq: int) -> MarketSnapshot:
        bar = {k: row.get(k) for k in ("open", "high", "low", "close", "volume", "buy_volume")}
        bar["open_time"] = row["timestamp"]
        book = None
        if row.get("spread_bps") is not None and row.get("depth") is not None:
            book = synthetic_book(row["close"], row["spread_bps"], row["depth"], self.depth_levels)
        liqs = liquidations(
            row.get("liq_long") or 0.0,
            row.get("liq_short") or 0.0,
            row["close"],
            bar_close_time(row["timestamp"], timeframe_seconds(self.timeframe)),
        )
        return snapshot(
            exchange=cast(Exchange, row["exchange"]),
            symbol=row["symbol"],
            timeframe=self.timeframe,
            bar=bar,
            closed=True,
            backfill=backfill,
            seq=row["_n"] + 1,
            funding_rate=row.get("funding_rate"),
            depth=book,
            liqs=liqs,
        )

    async def backfill(self) -> AsyncIterator[Batch]:
        batch: list[MarketSnapshot] = []
        backfill_rows = [r for r in self._rows if r["_n"] < self.backfill_bars]
        for row in backfill_rows:
            batch.append(self._snapshot(row, backfill=True, seq=row["_n"]))
            if len(batch) >= BATCH_ROWS:
                yield batch
                batch = []
        if batch:
            yield batch

    async def live(self) -> AsyncIterator[Batch]:
        rows = [r for r in self._rows if r["_n"] >= self.backfill_bars]
        if not rows:
            self.finished = True
            return
        clock = rows[0]["timestamp"].timestamp()  # market time (s); the first live bar is due now
        i = 0
        async for dt in ticks(self.hz, self.speed, 0.0):
            batch: list[MarketSnapshot] = []
            if self.speed is None:
                for row in rows[i : i + BATCH_ROWS]:
                    batch.append(self._snapshot(row, backfill=False, seq=row["_n"]))
                i += len(batch)
            else:
                while i < len(rows) and rows[i]["timestamp"].timestamp() <= clock:
                    batch.append(self._snapshot(rows[i], backfill=False, seq=rows[i]["_n"]))
                    i += 1
                clock += dt
            self.health.ok_all()
            if batch:
                yield batch
            if i >= len(rows):
                self.finished = True
                return
