"""Seeded, realistic synthetic crypto perpetual data for the offline pipeline and the tests.

What is modelled (per bar, every symbol):
- a market-wide volatility regime (calm / normal / stressed, a Markov chain) times an intraday
  seasonality (busiest around the US open, quietest in the Asian night);
- returns as a one-factor model (each symbol's correlation to a common market factor), with
  fat-tailed Poisson jumps; the log drift is zero: a martingale that favours no strategy;
- OHLC from an intrabar path of `SUBSTEPS` steps (the scanner's intrabar snapshots walk it);
- volume rising with volatility and |return|; taker `buy_volume` leaning with the bar's direction;
- a funding rate (per 8 h) that mean-reverts to a slowly drifting level;
- spread (bps) that widens and book depth that thins as volatility rises;
- liquidations (notional, long and short) that cluster in large moves.

Planted structure (`structure=RegimesSpec`, `source.model: regimes`; None is the martingale, bit
for bit): each symbol also runs a chain of structural regimes drawn from its own random stream: trend
(each bar drifts `drift` x its volatility, in a direction drawn per regime), mean reversion (each bar
closes `pull` of the log distance to the regime's starting price) and random (no drift). Regime
lengths are geometric with mean `meanBars`. The parameters describe the market, never a strategy.

Determinism: a symbol's data depends only on (seed, symbol, timeframe, start), not on which other
symbols are generated, because each symbol has its own random stream next to the shared market
stream. Data is produced in fixed chunks, so `generate(...)` and the bar-by-bar `SyntheticMarket`
iterator yield identical bars.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from apextrader.contracts.spec import RegimesSpec
from apextrader.contracts.units import timeframe_seconds
from apextrader.quant.jit import njit

if TYPE_CHECKING:  # polars (~35 MB RSS) is imported where a frame is built or read: docs/performance.md
    import polars as pl

Array = npt.NDArray[np.float64]
SUBSTEPS = 8
CHUNK = 1024
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
_REGIME_VOL = np.array([0.55, 1.0, 2.4])
#: Per-minute probability of staying in calm / normal / stressed.
_REGIME_STAY = np.array([0.998, 0.997, 0.99])
#: Structural regimes of `source.model: regimes`.
TREND, MEAN_REVERSION, RANDOM = 0, 1, 2
FRAME_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "buy_volume", "funding_rate",
                 "spread_bps", "depth", "liq_long", "liq_short")  # fmt: skip


@dataclass(frozen=True)
class SymbolProfile:
    price: float
    vol_1m: float  # log-return standard deviation per minute in the normal regime
    market_corr: float
    volume_1m: float  # base units per minute
    spread_bps: float
    depth: float  # base units on the top levels of each side


_PROFILES = {
    "BTC": SymbolProfile(60_000.0, 0.0009, 0.95, 25.0, 0.4, 12.0),
    "ETH": SymbolProfile(3_000.0, 0.0012, 0.85, 300.0, 0.6, 180.0),
    "SOL": SymbolProfile(140.0, 0.0018, 0.75, 4_000.0, 1.2, 2_500.0),
}


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def profile_for(symbol: str) -> SymbolProfile:
    base = symbol.split("/")[0]
    if base in _PROFILES:
        return _PROFILES[base]
    h = _stable_int(base)
    price = float(10 ** (h % 5 - 1) * (1 + (h >> 8) % 9))  # 0.1 .. 9000, stable per name
    return SymbolProfile(price, 0.002, 0.65, 50_000.0 / price, 2.0, 20_000.0 / price)


@dataclass
class SyntheticBar:
    """One generated bar of one symbol, with its intrabar path (closes of each sub-step)."""

    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float
    funding_rate: float
    spread_bps: float
    depth: float
    liq_long: float
    liq_short: float
    path: Array = field(repr=False)


@dataclass
class _SymbolState:
    profile: SymbolProfile
    rng: np.random.Generator
    price: float
    funding: float = 0.0001
    funding_level: float = 0.0001
    structure_rng: np.random.Generator | None = None  # the regime chain's own stream (regimes only)
    regime: int = -1  # current structural regime (-1: draw one at the first bar), direction, anchor
    direction: float = 1.0
    anchor: float = 0.0


class SyntheticMarket:
    """Bar-by-bar generator (`next_bars()`, iteration) and batch frames (`frames(n)`)."""

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        seed: int = 1,
        timeframe: str = "1m",
        start: datetime = DEFAULT_START,
        structure: RegimesSpec | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("at least one symbol is needed")
        self.structure = structure
        self.symbols = list(dict.fromkeys(symbols))
        self.seconds = timeframe_seconds(timeframe)
        self.minutes = self.seconds / 60
        self.start = start
        self._market_rng = np.random.default_rng([seed, _stable_int("market")])
        self._regime = 1
        self._states = {
            s: _SymbolState(
                profile_for(s), np.random.default_rng([seed, _stable_int(s)]), profile_for(s).price
            )
            for s in self.symbols
        }
        if structure is not None:  # a separate stream: the martingale's own draws stay the same
            for s, st in self._states.items():
                st.structure_rng = np.random.default_rng([seed, _stable_int(f"regimes:{s}")])
                st.anchor = float(np.log(st.price))
        self._index = 0  # bars generated into chunks so far
        self._chunk: dict[str, dict[str, Array]] = {}
        self._pos = CHUNK

    # -- public ---------------------------------------------------------------------------------
    def next_bars(self) -> dict[str, SyntheticBar]:
        """The next bar of every symbol."""
        if self._pos >= CHUNK:
            self._chunk = self._generate_chunk()
            self._pos = 0
        i = self._pos
        self._pos += 1
        out = {}
        for s, cols in self._chunk.items():
            scalars = {k: float(v[i]) for k, v in cols.items() if k not in ("path", "timestamp")}
            out[s] = SyntheticBar(
                timestamp=self.start + timedelta(seconds=float(cols["timestamp"][i])),
                path=cols["path"][i],
                **scalars,
            )
        return out

    def __iter__(self) -> Iterator[dict[str, SyntheticBar]]:
        while True:
            yield self.next_bars()

    def frames(self, bars: int) -> dict[str, pl.DataFrame]:
        """The next `bars` bars of every symbol as polars frames (`FRAME_COLUMNS`)."""
        parts: dict[str, list[dict[str, Array]]] = {s: [] for s in self.symbols}
        remaining = bars
        while remaining > 0:
            if self._pos >= CHUNK:
                self._chunk = self._generate_chunk()
                self._pos = 0
            take = min(remaining, CHUNK - self._pos)
            for s, cols in self._chunk.items():
                parts[s].append({k: v[self._pos : self._pos + take] for k, v in cols.items() if k != "path"})
            self._pos += take
            remaining -= take
        return {s: self._frame(chunks) for s, chunks in parts.items()}

    # -- generation -----------------------------------------------------------------------------
    def _frame(self, chunks: list[dict[str, Array]]) -> pl.DataFrame:
        import polars as pl

        cols = {k: np.concatenate([c[k] for c in chunks]) if chunks else np.empty(0) for k in FRAME_COLUMNS}
        epoch_ms = int(self.start.timestamp() * 1000) + (cols.pop("timestamp") * 1000).astype(np.int64)
        ts = pl.Series("timestamp", epoch_ms, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC"))
        return pl.DataFrame({"timestamp": ts, **cols})

    def _regimes(self, n: int) -> npt.NDArray[np.int64]:
        out = _regime_chain(self._regime, _REGIME_STAY**self.minutes, self._market_rng.random((n, 2)))
        self._regime = int(out[-1])
        return out

    def _generate_chunk(self) -> dict[str, dict[str, Array]]:
        n = CHUNK
        t_sec: Array = (self._index + np.arange(n, dtype=np.float64)) * float(self.seconds)
        self._index += n
        hour = ((self.start.timestamp() + t_sec) % 86_400) / 3_600
        season = 1 + 0.3 * np.cos(2 * np.pi * (hour - 14.5) / 24) + 0.1 * np.cos(2 * np.pi * (hour - 8) / 12)
        vol_mult = _REGIME_VOL[self._regimes(n)] * season
        z_market = self._market_rng.standard_normal((n, SUBSTEPS))
        return {s: self._symbol_chunk(st, t_sec, vol_mult, z_market) for s, st in self._states.items()}

    def _symbol_chunk(
        self, st: _SymbolState, t_sec: Array, vol_mult: Array, z_market: Array
    ) -> dict[str, Array]:
        p, rng, n = st.profile, st.rng, t_sec.size
        base_sigma = p.vol_1m * np.sqrt(self.minutes)
        sigma = base_sigma * vol_mult  # per bar
        rho = p.market_corr
        z = rho * z_market + np.sqrt(1 - rho**2) * rng.standard_normal((n, SUBSTEPS))
        steps = z * (sigma / np.sqrt(SUBSTEPS))[:, None]
        jumps = rng.random(n) < 0.002 * self.minutes**0.5 * vol_mult
        where = rng.integers(0, SUBSTEPS, n)
        sizes = rng.laplace(0.0, 3 * base_sigma, n)
        steps[np.flatnonzero(jumps), where[jumps]] += sizes[jumps]
        if self.structure is None:
            log_path = np.log(st.price) + np.cumsum(steps.ravel()).reshape(n, SUBSTEPS)
        else:
            log_path = self._structured(st, steps, sigma)
        path = np.exp(log_path)
        close = path[:, -1]
        open_ = np.r_[st.price, close[:-1]]
        wick = np.abs(rng.standard_normal((n, 2))) * (sigma / SUBSTEPS)[:, None]
        high = np.maximum(open_, path.max(axis=1)) * np.exp(wick[:, 0])
        low = np.minimum(open_, path.min(axis=1)) * np.exp(-wick[:, 1])
        st.price = float(close[-1])
        bar_ret = np.log(close / open_)
        zret = bar_ret / sigma
        volume = (
            p.volume_1m * self.minutes * vol_mult**0.8 * (1 + 0.6 * np.abs(zret))
            * np.exp(rng.normal(-0.06, 0.35, n))
        )  # fmt: skip
        buy_share = np.clip(0.5 + 0.2 * np.tanh(zret) + rng.normal(0, 0.05, n), 0.02, 0.98)
        funding, st.funding, st.funding_level = _funding_path(
            st.funding,
            st.funding_level,
            min(1.0, 0.01 * self.minutes),
            rng.normal(0, 2e-6 * np.sqrt(self.minutes), n),
            rng.normal(0, 1.5e-5 * np.sqrt(self.minutes), n),
        )
        stress = sigma / base_sigma
        spread = np.maximum(0.1, p.spread_bps * stress * np.exp(rng.normal(0, 0.2, n)))
        depth = p.depth / stress**1.2 * np.exp(rng.normal(0, 0.25, n))
        notional = volume * close
        background = (rng.random((n, 2)) < 0.03) * rng.exponential(0.002, (n, 2))
        cascade = np.stack([np.clip(-zret - 2, 0, 8), np.clip(zret - 2, 0, 8)], axis=1) ** 1.5
        liq = notional[:, None] * (0.04 * cascade * np.exp(rng.normal(0, 0.5, (n, 2))) + background)
        return {
            "timestamp": t_sec,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "buy_volume": volume * buy_share,
            "funding_rate": funding,
            "spread_bps": spread,
            "depth": depth,
            "liq_long": liq[:, 0],
            "liq_short": liq[:, 1],
            "path": path,
        }

    def _structured(self, st: _SymbolState, steps: Array, sigma: Array) -> Array:
        g = self.structure
        assert g is not None and st.structure_rng is not None
        # integer shares, cumulated exactly: a kind with share 0 can never be drawn
        cum_shares = np.cumsum(
            np.array([g.trend.share, g.mean_reversion.share, g.random.share], dtype=np.int64)
        )
        params = np.array([g.trend.drift, g.mean_reversion.pull, 1.0 / g.mean_bars])
        u = st.structure_rng.random((steps.shape[0], 3))
        log_path, state = _structured_path(
            float(np.log(st.price)), steps, sigma, u, cum_shares, params,
            np.array([float(st.regime), st.direction, st.anchor]),
        )  # fmt: skip
        st.regime, st.direction, st.anchor = int(state[0]), float(state[1]), float(state[2])
        return log_path


@njit(cache=True)
def _structured_path(
    x: float,
    steps: Array,
    sigma: Array,
    u: Array,
    cum_shares: npt.NDArray[np.int64],
    params: Array,
    state: Array,
) -> tuple[Array, Array]:
    """The log path with the regimes' drift. Per bar: switch regime with probability 1/meanBars
    (the next drawn by share; a trend draws its direction; the anchor is the price at the switch),
    then add the bar's drift evenly over its sub-steps. `state` = (regime, direction, anchor)."""
    n, k = steps.shape
    drift, pull, switch = params[0], params[1], params[2]
    regime, direction, anchor = int(state[0]), state[1], state[2]
    out = np.empty((n, k))
    for t in range(n):
        if regime < 0 or u[t, 0] < switch:
            total = cum_shares[2]
            pick = min(int(u[t, 1] * total), total - 1)  # uniform over 0 .. total - 1
            regime = 0
            while pick >= cum_shares[regime]:
                regime += 1
            direction = 1.0 if u[t, 2] < 0.5 else -1.0
            anchor = x
        d = 0.0
        if regime == TREND:
            d = direction * drift * sigma[t]
        elif regime == MEAN_REVERSION:
            d = -pull * (x - anchor)
        for j in range(k):
            x += steps[t, j] + d / k
            out[t, j] = x
    return out, np.array([float(regime), direction, anchor])


@njit(cache=True)
def _regime_chain(start: int, stay: Array, u: Array) -> npt.NDArray[np.int64]:
    """Markov chain over calm(0) / normal(1) / stressed(2): leaving normal goes either way."""
    out = np.empty(u.shape[0], dtype=np.int64)
    r = start
    for t in range(u.shape[0]):
        if u[t, 0] > stay[r]:
            r = (2 if u[t, 1] < 0.5 else 0) if r == 1 else 1
        out[t] = r
    return out


@njit(cache=True)
def _funding_path(
    funding: float, level: float, kappa: float, level_steps: Array, shocks: Array
) -> tuple[Array, float, float]:
    """Funding mean-reverts (rate kappa) to a level that itself random-walks within a band."""
    out = np.empty(shocks.shape[0])
    for t in range(shocks.shape[0]):
        level = min(max(level + level_steps[t], -0.0004), 0.0008)
        funding = min(max(funding + kappa * (level - funding) + shocks[t], -0.0075), 0.0075)
        out[t] = funding
    return out, funding, level


def generate(
    symbols: Sequence[str],
    bars: int,
    *,
    seed: int = 1,
    timeframe: str = "1m",
    start: datetime = DEFAULT_START,
    structure: RegimesSpec | None = None,
) -> dict[str, pl.DataFrame]:
    """`bars` bars per symbol as polars frames (used by `apex data synth`, `apex backtest --synthetic`)."""
    market = SyntheticMarket(symbols, seed=seed, timeframe=timeframe, start=start, structure=structure)
    return market.frames(bars)


def generate_long(
    symbols: Sequence[str],
    bars: int,
    *,
    seed: int = 1,
    timeframe: str = "1m",
    start: datetime = DEFAULT_START,
    structure: RegimesSpec | None = None,
) -> pl.DataFrame:
    """All symbols in one frame with a `symbol` column (the file format of docs/backtest.md)."""
    import polars as pl

    frames = generate(symbols, bars, seed=seed, timeframe=timeframe, start=start, structure=structure)
    return pl.concat(
        [f.with_columns(symbol=pl.lit(s)).select("symbol", *FRAME_COLUMNS) for s, f in frames.items()]
    )
