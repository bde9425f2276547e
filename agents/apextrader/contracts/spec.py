"""The TradingPipeline `spec` (docs/conventions.md §1): the one source of the CRD and of every agent's config.

Keys are camelCase (Kubernetes style); `agents` is keyed by agent id as written. Every section has
defaults, so a minimal spec names only exchanges and symbols.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal, overload

from pydantic import Field, field_validator, model_validator

from apextrader import __version__
from apextrader.contracts.agent_spec import (
    AgentSpec,
    AgentsSpec,
    FeatureEngineerSpec,
    MarketScannerSpec,
    RiskManagerSpec,
)
from apextrader.contracts.base import SpecModel
from apextrader.contracts.canary_spec import CanarySpec
from apextrader.contracts.names import DOMAINS, AgentId
from apextrader.contracts.payloads import Exchange
from apextrader.contracts.units import Duration, Quantity, parse_quantity

SYMBOL_PATTERN = r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$"
Timeframe = Literal["1m", "3m", "5m", "15m", "30m", "1h", "4h", "1d"]
Fraction = Annotated[float, Field(gt=0, le=1)]
PositiveInt = Annotated[int, Field(ge=1)]


class Capital(SpecModel):
    amount: Annotated[float, Field(gt=0)] = 100_000.0
    currency: str = "USDT"


class TrendRegime(SpecModel):
    """Trend persistence: each bar drifts `drift` x the bar's volatility in one direction, drawn
    (up or down, even odds) when the regime starts."""

    share: Annotated[int, Field(ge=0, le=1000)] = 1  # relative weight of the kind when a regime is drawn
    drift: Annotated[float, Field(ge=0, le=2)] = 0.1


class MeanReversionRegime(SpecModel):
    """Mean reversion: each bar closes `pull` of the log distance to the regime's anchor (the price
    when the regime started): an Ornstein-Uhlenbeck pull with a half-life of ln 2 / pull bars."""

    share: Annotated[int, Field(ge=0, le=1000)] = 1  # relative weight of the kind when a regime is drawn
    pull: Annotated[float, Field(ge=0, le=1)] = 0.05


class RandomRegime(SpecModel):
    """No structure: the martingale's own bars."""

    share: Annotated[int, Field(ge=0, le=1000)] = 1  # relative weight of the kind when a regime is drawn


class RegimesSpec(SpecModel):
    """`source.model: regimes`: the martingale plus a per-symbol chain of structural regimes. A
    regime lasts a geometric number of bars with mean `meanBars`; the next one is drawn by share
    (it may be the same kind again). Documented in docs/market-and-features.md."""

    mean_bars: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    trend: TrendRegime = Field(default_factory=TrendRegime)
    mean_reversion: MeanReversionRegime = Field(default_factory=MeanReversionRegime)
    random: RandomRegime = Field(default_factory=RandomRegime)

    @model_validator(mode="after")
    def _some_share(self) -> RegimesSpec:
        if self.trend.share + self.mean_reversion.share + self.random.share <= 0:
            raise ValueError("regimes: at least one of trend, meanReversion, random needs share > 0")
        return self


class SourceSpec(SpecModel):
    """Where market data comes from: `synthetic` (seeded), `replay` (a file) or `ccxt` (live public)."""

    kind: Literal["synthetic", "replay", "ccxt"] = "synthetic"
    seed: int = 1
    #: Parquet or CSV for `replay`.
    path: str | None = None
    #: Closed bars per symbol published at start (`backfill: true`) so indicators warm up.
    backfill_bars: Annotated[int, Field(ge=0, le=100_000)] = 600
    #: Snapshots per second per symbol.
    snapshot_hz: Annotated[float, Field(gt=0, le=100)] = 2.0
    #: Market-time seconds per wall-clock second for synthetic/replay (None: real time for ccxt,
    #: and an accelerated default for offline sources chosen by `apex up`).
    speed: Annotated[float, Field(gt=0)] | None = None
    #: Order-book levels per side.
    depth_levels: Annotated[int, Field(ge=1, le=100)] = 10
    #: How `ccxt` gets live data: `websocket` streams candles, book, trades (taker side, for CVD)
    #: and liquidations through ccxt.pro on Binance and Bybit, polling REST on the others and for
    #: funding; `rest` polls everything at `snapshotHz`. Ignored by the offline sources.
    transport: Literal["websocket", "rest"] = "websocket"
    #: Synthetic only (ignored by replay and ccxt, so `apex up --source replay:PATH` keeps the rest
    #: of the file). `martingale` (default): no strategy has an edge, by construction. `regimes`:
    #: planted trend / mean-reversion structure with the parameters of `regimes`.
    model: Literal["martingale", "regimes"] = "martingale"
    regimes: RegimesSpec | None = None

    @model_validator(mode="after")
    def _replay_needs_path(self) -> SourceSpec:
        if self.kind == "replay" and not self.path:
            raise ValueError("source.path is required when kind is replay")
        if self.model == "martingale" and self.regimes is not None:
            raise ValueError("source.regimes needs source.model: regimes")
        return self

    def structure(self) -> RegimesSpec | None:
        """The planted structure of a synthetic market (None: the martingale, or not synthetic)."""
        if self.kind != "synthetic" or self.model != "regimes":
            return None
        return self.regimes or RegimesSpec()


#: Streams per pipeline: one per domain (MARKET, ALERTS, FEATURES, SIGNALS, ORDERS, DLQ).
STREAMS_PER_PIPELINE: Final = len(DOMAINS)
#: The share of the managed volume JetStream may fill (`max_file_store`); the rest is headroom.
JETSTREAM_STORE_SHARE: Final = 0.9


def jetstream_store_bytes(storage: str) -> int:
    """The `max_file_store` the managed bus gets from a volume of `storage`."""
    return int(parse_quantity(storage) * JETSTREAM_STORE_SHARE)


class BusTls(SpecModel):
    """TLS on the managed bus's client port: a `kubernetes.io/tls` Secret (cert-manager's or the
    user's) with `tls.crt`, `tls.key` and `ca.crt` (docs/bus.md)."""

    secret_name: Annotated[str, Field(min_length=1, max_length=253)]


class ManagedBus(SpecModel):
    replicas: Literal[1, 3] = 1
    #: The volume of each NATS server. JetStream reserves every stream's `maxBytes` up front and
    #: refuses a stream that does not fit (err_code 10047), so 90 % of this must hold
    #: 6 × `bus.limits.maxBytes`; validation refuses a spec where it does not.
    storage: Quantity = "2Gi"
    image: str = "nats:2.10-alpine"
    tls: BusTls | None = None


class StreamLimits(SpecModel):
    max_age: Duration = "24h"
    max_bytes: Quantity = "256Mi"


class BusSpec(SpecModel):
    """Exactly one of `managed` (the operator runs NATS) or `url` (an external NATS)."""

    managed: ManagedBus | None = None
    url: Annotated[str, Field(pattern=r"^(nats|tls)://")] | None = None
    limits: StreamLimits = Field(default_factory=StreamLimits)
    #: Delivery attempts before an event goes to the DLQ.
    max_deliver: Annotated[int, Field(ge=1, le=20)] = 5
    ack_wait: Duration = "30s"
    #: Replicas of every stream, durable consumer and the KV bucket (1 or 3); default: the managed
    #: bus's `replicas`, 1 for an external `url` (docs/bus.md).
    stream_replicas: Literal[1, 3] | None = None
    #: An external bus's login: a Secret with `user` and `password` (never in `url`).
    credentials_secret: Annotated[str, Field(min_length=1, max_length=253)] | None = None

    @property
    def effective_stream_replicas(self) -> int:
        if self.stream_replicas is not None:
            return self.stream_replicas
        return self.managed.replicas if self.managed is not None else 1

    @model_validator(mode="before")
    @classmethod
    def _default_managed(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("managed") is None and data.get("url") is None:
            return {**data, "managed": {}}
        return data

    @model_validator(mode="after")
    def _managed_or_url(self) -> BusSpec:
        if self.managed is not None and self.url is not None:
            raise ValueError("bus: give managed or url, not both")
        if self.managed is not None and self.effective_stream_replicas > self.managed.replicas:
            raise ValueError("bus.streamReplicas: cannot exceed bus.managed.replicas")
        if self.credentials_secret is not None and self.managed is not None:
            raise ValueError("bus.credentialsSecret: only for an external bus.url")
        if self.url is not None and "@" in self.url.split("://", 1)[-1].split("/", 1)[0]:
            raise ValueError("bus.url: no credentials in the URL; use bus.credentialsSecret")
        return self

    @model_validator(mode="after")
    def _streams_fit_the_volume(self) -> BusSpec:
        if self.managed is None:
            return self  # an external bus: its capacity is not ours to know
        need = STREAMS_PER_PIPELINE * parse_quantity(self.limits.max_bytes)
        have = jetstream_store_bytes(self.managed.storage)
        if need > have:
            fit = have // STREAMS_PER_PIPELINE
            raise ValueError(
                f"bus.managed.storage {self.managed.storage} gives JetStream {_mib(have)} "
                f"(90 %), but {STREAMS_PER_PIPELINE} streams x bus.limits.maxBytes "
                f"{self.limits.max_bytes} need {_mib(need)}: raise storage to at least "
                f"{_mib(math.ceil(need / JETSTREAM_STORE_SHARE))} or lower maxBytes to {fit // 2**20}Mi"
            )
        return self


def _mib(n: int) -> str:
    return f"{math.ceil(n / 2**20)}Mi"


class ImageSpec(SpecModel):
    repository: str = "ghcr.io/apextrader/apextrader"
    tag: str = __version__
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


class BreakoutParams(SpecModel):
    """Donchian-channel break confirmed by volume (and CVD), ATR stop and target."""

    enabled: bool = True
    lookback: Annotated[int, Field(ge=2, le=500)] = 20
    volume_factor: Annotated[float, Field(ge=0)] = 1.2
    volume_lookback: Annotated[int, Field(ge=2, le=500)] = 20
    cvd_confirm: bool = False
    stop_atr: Annotated[float, Field(gt=0)] = 2.0
    target_atr: Annotated[float, Field(gt=0)] = 3.0


class MeanReversionParams(SpecModel):
    """RSI/Bollinger extremes, traded toward the mean, with an EMA-200 trend filter."""

    enabled: bool = True
    rsi_low: Annotated[float, Field(gt=0, lt=50)] = 30.0
    rsi_high: Annotated[float, Field(gt=50, lt=100)] = 70.0
    bb_period: Annotated[int, Field(ge=2, le=500)] = 20
    bb_std: Annotated[float, Field(gt=0)] = 2.0
    trend_filter: bool = True
    stop_atr: Annotated[float, Field(gt=0)] = 1.5
    target_atr: Annotated[float, Field(gt=0)] = 2.0


class Strategies(SpecModel):
    breakout: BreakoutParams = Field(default_factory=BreakoutParams)
    mean_reversion: MeanReversionParams = Field(default_factory=MeanReversionParams)


class RiskLimits(SpecModel):
    """The risk manager's limits; fractions are of the track's capital share."""

    risk_per_trade: Annotated[float, Field(gt=0, le=0.1)] = 0.005
    max_leverage: Annotated[float, Field(gt=0, le=125)] = 3.0
    max_position_pct: Fraction = 0.5
    max_gross_exposure: Annotated[float, Field(gt=0)] = 2.0
    max_net_exposure: Annotated[float, Field(gt=0)] = 1.5
    max_open_positions: Annotated[int, Field(ge=1, le=1000)] = 6
    #: Keep this share of equity free after initial margin.
    margin_headroom: Annotated[float, Field(ge=0, lt=1)] = 0.2
    maintenance_margin_rate: Annotated[float, Field(gt=0, lt=1)] = 0.005
    max_daily_loss: Fraction = 0.03
    max_drawdown: Fraction = 0.10
    #: Size multiplier while a `reduce` alert is active.
    reduce_factor: Annotated[float, Field(ge=0, le=1)] = 0.5
    #: An entry signal expires once the market is more than this many bars past the close of the bar
    #: it was computed on (a backlog, a slow gate): its price and stop no longer describe the market.
    #: Exits never expire.
    signal_expiry_bars: Annotated[int, Field(ge=1, le=10_000)] = 1


def _taker_fees() -> dict[Exchange, float]:
    return {"binance": 5.0, "bybit": 5.5, "okx": 5.0}


def _maker_fees() -> dict[Exchange, float]:
    return {"binance": 2.0, "bybit": 2.0, "okx": 2.0}


def _default_exchanges() -> list[Exchange]:
    return ["binance"]


class BarFillSpec(SpecModel):
    """Paper fills for a market without order-book depth (plain OHLCV replay, or a venue without
    a book): the price of a bar plus half the spread and the slippage, against the trader."""

    #: `next_open`: the open of the first bar opening after the order reaches the venue (the bar
    #: after the signal's when the pipeline keeps up, what `apex backtest` fills at); `close`: the
    #: close of the bar in effect then.
    price: Literal["next_open", "close"] = "next_open"
    spread_bps: Annotated[float, Field(ge=0, le=1000)] = 2.0
    slippage_bps: Annotated[float, Field(ge=0, le=1000)] = 1.0


class ExecutionSpec(SpecModel):
    #: Kubernetes Secret with `<EXCHANGE>_API_KEY`/`_API_SECRET`/`_API_PASSWORD` and `DRY_RUN`.
    credentials_secret: str | None = None
    order_type: Literal["market", "limit"] = "market"
    #: Fee tiers in bps per exchange (VIP 0 perpetual taker/maker rates).
    taker_fee_bps: dict[Exchange, Annotated[float, Field(ge=0)]] = Field(default_factory=_taker_fees)
    maker_fee_bps: dict[Exchange, Annotated[float, Field(ge=0)]] = Field(default_factory=_maker_fees)
    #: Paper-trading latency between decision and fill.
    latency_ms: Annotated[float, Field(ge=0)] = 50.0
    #: Price protection for entries: a market entry takes no level worse than the mid at decision by
    #: more than this (the rest is cancelled; nothing within it: rejected). Exits are never limited.
    price_protection_bps: Annotated[float, Field(gt=0, le=10_000)] | None = 50.0
    cancel_on_stop: bool = True
    max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    #: Paper fills when a market has no depth (docs/risk-and-execution.md).
    bar_fill: BarFillSpec = Field(default_factory=BarFillSpec)
    #: Live: after a submit whose outcome is unknown, how long the venue must keep answering "not
    #: found" before the same client order id is submitted again.
    lookup_grace_s: Annotated[float, Field(ge=0, le=600)] = 10.0


class WatcherThresholds(SpecModel):
    liquidation_z: Annotated[float, Field(gt=0)] = 3.0
    liquidation_window: Duration = "5m"
    funding_abs: Annotated[float, Field(gt=0)] = 0.001
    volatility_z: Annotated[float, Field(gt=0)] = 4.0
    stale_after: Duration = "15s"
    divergence_bps: Annotated[float, Field(gt=0)] = 50.0
    #: Severity for a volatility spike / funding extreme (cascades and stale data halt).
    spike_severity: Literal["info", "reduce", "halt"] = "reduce"


def _default_grid() -> dict[str, dict[str, list[float]]]:
    return {
        "breakout": {"lookback": [20, 40], "volumeFactor": [1.0, 1.5]},
        "meanReversion": {"bbStd": [2.0, 2.5], "rsiLow": [25.0, 30.0]},
    }


class BacktestSpec(SpecModel):
    """The live walk-forward gate and the defaults of `apex backtest`."""

    # Each fold chooses, on its in-sample window, the grid point with the highest in-sample
    # expectancy (at least `minTrades` trades), then trades it on the next out-of-sample window.
    # A signal passes the live gate when the out-of-sample trades of all folds number at least
    # `minTrades` and their t-statistic against `minExpectancy` exceeds the Student-t threshold at
    # `1 - significance / trials` (trials = grid points tried): docs/backtest.md.

    in_sample_bars: Annotated[int, Field(ge=20)] = 300
    out_of_sample_bars: Annotated[int, Field(ge=5)] = 100
    folds: Annotated[int, Field(ge=1, le=100)] = 3
    anchored: bool = False
    min_trades: Annotated[int, Field(ge=1)] = 5
    fees_bps: Annotated[float, Field(ge=0)] = 5.0
    slippage_bps: Annotated[float, Field(ge=0)] = 2.0
    #: Out-of-sample expectancy (mean net return per trade on equity) a signal must exceed.
    min_expectancy: float = 0.0
    #: False-positive rate of the gate per (strategy, symbol, track): the chance that a strategy
    #: with no edge beyond `minExpectancy` passes, after the Bonferroni correction for the grid.
    significance: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    #: Parameter grid per strategy (`breakout`, `meanReversion`): field -> values to try; the
    #: strategy's spec parameters fill the fields not named. Points that fail validation are skipped;
    #: numbers only (integer parameters take whole numbers).
    grid: dict[str, dict[str, list[float]]] = Field(default_factory=_default_grid)
    #: Recompute the live walk-forward record every this many closed bars per symbol.
    refresh_bars: Annotated[int, Field(ge=1)] = 20


class TradingPipelineSpec(SpecModel):
    mode: Literal["paper", "live"] = "paper"
    exchanges: Annotated[list[Exchange], Field(min_length=1)] = Field(default_factory=_default_exchanges)
    symbols: Annotated[list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]], Field(min_length=1)]
    timeframe: Timeframe = "1m"
    capital: Capital = Field(default_factory=Capital)
    source: SourceSpec = Field(default_factory=SourceSpec)
    bus: BusSpec = Field(default_factory=BusSpec)
    image: ImageSpec | None = None
    agents: AgentsSpec = Field(default_factory=AgentsSpec)
    strategies: Strategies = Field(default_factory=Strategies)
    risk: RiskLimits = Field(default_factory=RiskLimits)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    watcher: WatcherThresholds = Field(default_factory=WatcherThresholds)
    backtest: BacktestSpec = Field(default_factory=BacktestSpec)
    canary: CanarySpec | None = None

    @field_validator("exchanges", "symbols")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("entries must be unique")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> TradingPipelineSpec:
        if self.mode == "live" and not self.execution.credentials_secret:
            raise ValueError("execution.credentialsSecret is required when mode is live")
        return self

    @overload
    def agent(self, agent: Literal["market-scanner"]) -> MarketScannerSpec: ...
    @overload
    def agent(self, agent: Literal["feature-engineer"]) -> FeatureEngineerSpec: ...
    @overload
    def agent(self, agent: Literal["risk-manager"]) -> RiskManagerSpec: ...
    @overload
    def agent(self, agent: AgentId) -> AgentSpec: ...
    def agent(self, agent: AgentId) -> AgentSpec:
        """`agents.<id>` with its typed settings (the agent's defaults when not named)."""
        return self.agents.of(agent)
