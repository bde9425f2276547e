"""The `synthetic` source: `quant.synthetic` bars for every (exchange, symbol) on an accelerated clock.

Each exchange sees the same underlying market with its own small basis (an AR(1) of about 1 bp)
and its share of the volume, so cross-exchange checks have something realistic to compare.
Between bar closes it publishes the forming bar, walked along the generator's intrabar path.
`source.model: regimes` plants the structure of `source.regimes` (`quant.synthetic`); the default is
the martingale.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime

import numpy as np

from apextrader.contracts.payloads import Exchange, MarketSnapshot
from apextrader.contracts.spec import RegimesSpec
from apextrader.market.snapshots import bar_close_time, liquidations, snapshot_dict, synthetic_book
from apextrader.market.sources.base import Batch, MarketSource, SourceHealth
from apextrader.market.sources.pacing import ticks
from apextrader.market.wire import WireSnapshot
from apextrader.quant.synthetic import DEFAULT_START, SUBSTEPS, SyntheticBar, SyntheticMarket

_VOLUME_SHARE: dict[Exchange, float] = {"binance": 0.5, "bybit": 0.3, "okx": 0.2}
BACKFILL_BATCH = 100


def _seed_for(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class SyntheticSource(MarketSource):
    kind = "synthetic"

    def __init__(
        self,
        *,
        exchanges: list[Exchange],
        symbols: list[str],
        timeframe: str = "1m",
        seed: int = 1,
        backfill_bars: int = 600,
        hz: float = 2.0,
        speed: float | None = None,
        depth_levels: int = 10,
        start: datetime = DEFAULT_START,
        structure: RegimesSpec | None = None,
    ) -> None:
        self.exchanges, self.symbols, self.timeframe = exchanges, symbols, timeframe
        self.market = SyntheticMarket(
            symbols, seed=seed, timeframe=timeframe, start=start, structure=structure
        )
        self.bar_seconds = self.market.seconds
        self.backfill_bars, self.hz, self.speed, self.depth_levels = backfill_bars, hz, speed, depth_levels
        self._basis_rng = {e: np.random.default_rng([seed, _seed_for(f"basis:{e}")]) for e in exchanges}
        self._basis: dict[Exchange, np.ndarray] = {e: np.zeros(len(symbols)) for e in exchanges}  # type: ignore[type-arg]
        self._seq: defaultdict[tuple[Exchange, str], int] = defaultdict(int)
        self.health = SourceHealth(exchanges)

    def _next(self) -> dict[str, SyntheticBar]:
        bars = self.market.next_bars()
        for e in self.exchanges:
            shocks = self._basis_rng[e].standard_normal(len(self.symbols)) * 0.5e-4
            self._basis[e] = 0.9 * self._basis[e] + shocks
        return bars

    def _snapshots(
        self, bars: dict[str, SyntheticBar], *, backfill: bool, fraction: float = 1.0
    ) -> list[WireSnapshot]:
        """One snapshot per (exchange, symbol), in wire form: every number satisfies the model's
        constraints by construction (prices > 0 scaled by the same factor keep low <= open, close
        <= high), checked where it is not obvious (the far end of a wide book) and validated the
        slow way then, which raises with pydantic's message."""
        closed = fraction >= 1.0
        j = SUBSTEPS if closed else max(1, int(fraction * SUBSTEPS))
        part = 1.0 if closed else j / SUBSTEPS
        seconds = self.bar_seconds
        out: list[WireSnapshot] = []
        for e in self.exchanges:
            share = _VOLUME_SHARE[e]
            basis = self._basis[e].tolist()
            for k, s in enumerate(self.symbols):
                b = bars[s]
                f = 1.0 + basis[k]
                if closed:
                    high, low, close = b.high, b.low, b.close
                else:
                    path = b.path[:j]
                    high = max(b.open, float(path.max()))
                    low = min(b.open, float(path.min()))
                    close = float(path[-1])
                px = close * f
                bar = {
                    "open_time": b.timestamp,
                    "open": b.open * f,
                    "high": high * f,
                    "low": low * f,
                    "close": px,
                    "volume": b.volume * share * part,
                    "buy_volume": b.buy_volume * share * part,
                }
                key = (e, s)
                self._seq[key] = seq = self._seq[key] + 1
                liqs = (
                    liquidations(
                        b.liq_long * share, b.liq_short * share, px, bar_close_time(b.timestamp, seconds)
                    )
                    if closed
                    else []
                )
                book = synthetic_book(px, b.spread_bps, b.depth * share, self.depth_levels)
                fields = snapshot_dict(exchange=e, symbol=s, timeframe=self.timeframe, bar=bar, closed=closed,
                                       backfill=backfill, seq=seq, funding_rate=b.funding_rate, depth=book,
                                       liqs=liqs)  # fmt: skip
                if not book["bids"][-1]["price"] > 0:  # a book wider than the price: refused, named
                    MarketSnapshot.model_validate(fields)
                out.append(WireSnapshot(fields))
        return out

    async def backfill(self) -> AsyncIterator[Batch]:
        batch: list[WireSnapshot] = []
        for _ in range(self.backfill_bars):
            batch += self._snapshots(self._next(), backfill=True)
            if len(batch) >= BACKFILL_BATCH * len(self.symbols) * len(self.exchanges):
                yield batch
                batch = []
        if batch:
            yield batch

    async def live(self) -> AsyncIterator[Batch]:
        current = self._next()
        elapsed = 0.0  # market seconds into the current bar
        async for dt in ticks(self.hz, self.speed, float(self.bar_seconds)):
            elapsed += dt
            batch: list[WireSnapshot] = []
            while elapsed >= self.bar_seconds:
                batch += self._snapshots(current, backfill=False)
                elapsed -= self.bar_seconds
                current = self._next()
            if elapsed > 0 and self.speed is not None:
                batch += self._snapshots(current, backfill=False, fraction=elapsed / self.bar_seconds)
            self.health.ok_all()
            yield batch
