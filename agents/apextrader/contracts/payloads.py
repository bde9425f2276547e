"""One typed payload per event type (the envelope's `data`).

Prices and sizes are floats in quote/base units as ccxt reports them; market time (the bar's open
time) lives here, the envelope's `timestamp`/`origin_ts` are wall-clock publish times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from apextrader.contracts.canary_spec import Weight

Exchange = Literal["binance", "bybit", "okx"]
Quality = Literal["ok", "stale", "crossed", "gap"]
SignalSide = Literal["long", "short", "flat"]
OrderSide = Literal["buy", "sell"]
Severity = Literal["info", "reduce", "halt"]
StrategyName = Literal["breakout", "mean_reversion"]

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Payload(BaseModel):
    """Base of every payload: frozen, unknown keys refused (a typo is an invalid event, not data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Bar(Payload):
    """One OHLCV bar; `open_time` is the bar's open (market time, UTC)."""

    open_time: datetime
    open: PositiveFloat
    high: PositiveFloat
    low: PositiveFloat
    close: PositiveFloat
    volume: NonNegFloat
    #: Taker-buy volume when the source reports trade side (CVD uses it; else a candle approximation).
    buy_volume: NonNegFloat | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Bar:
        if self.low > min(self.open, self.close) or self.high < max(self.open, self.close):
            raise ValueError("bar: low <= open, close <= high must hold")
        return self


class BookLevel(Payload):
    price: PositiveFloat
    amount: PositiveFloat


class OrderBook(Payload):
    """Top-N levels, best first."""

    bids: list[BookLevel]
    asks: list[BookLevel]

    @property
    def mid(self) -> float | None:
        if not self.bids or not self.asks:
            return None
        return (self.bids[0].price + self.asks[0].price) / 2

    @property
    def crossed(self) -> bool:
        return bool(self.bids and self.asks and self.bids[0].price >= self.asks[0].price)


class Liquidation(Payload):
    side: OrderSide  # side of the liquidated position's closing order
    price: PositiveFloat
    amount: PositiveFloat
    time: datetime


class MarketSnapshot(Payload):
    """`market.snapshot`: the scanner's view of one symbol on one exchange."""

    exchange: Exchange
    symbol: str
    timeframe: str
    bar: Bar
    #: True when `bar` is closed (features/strategies act on closed bars).
    closed: bool = True
    #: Part of the start-up history (features warm up on it; strategies emit no signal for it).
    backfill: bool = False
    quality: Quality = "ok"
    funding_rate: FiniteFloat | None = None
    depth: OrderBook | None = None
    liquidations: list[Liquidation] = Field(default_factory=list)
    #: Sum of liquidated notional over the last 24 h when the exchange publishes it.
    liquidations_24h: NonNegFloat | None = None
    seq: int = Field(default=0, ge=0)


class Features(Payload):
    """The indicator values at one bar (None during an indicator's warm-up)."""

    atr14: float | None = None
    rsi14: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    ema20: float | None = None
    ema50: float | None = None
    ema200: float | None = None
    cvd: float | None = None
    #: Further named features a strategy needs (e.g. Donchian channel, Bollinger bands).
    extra: dict[str, float | None] = Field(default_factory=dict)


class FeaturesComputed(Payload):
    """`features.computed`: emitted when a bar closes (and intrabar if the spec asks)."""

    exchange: Exchange
    symbol: str
    timeframe: str
    bar: Bar
    features: Features
    backfill: bool = False
    intrabar: bool = False


class SignalProposed(Payload):
    """`signal.proposed`: a strategy's entry (long/short) or exit (flat) on a closed bar."""

    strategy: StrategyName
    exchange: Exchange
    symbol: str
    side: SignalSide
    strength: Annotated[float, Field(ge=0, le=1)]
    bar_time: datetime
    price: PositiveFloat  # the bar close the signal was computed on
    stop: PositiveFloat | None = None
    target: PositiveFloat | None = None
    atr: NonNegFloat | None = None


class SignalValidated(Payload):
    """`signal.validated`: the backtester's walk-forward gate passed the signal."""

    signal: SignalProposed
    expectancy: float
    expectancy_se: NonNegFloat
    trades: int = Field(ge=0)
    confidence: Annotated[float, Field(ge=0, le=1)]
    #: The gate's test (docs/backtest.md): t-statistic of the out-of-sample per-trade returns, the
    #: threshold it beat (corrected for `trials` parameter sets) and the method's name.
    statistic: float | None = None
    threshold: float | None = None
    trials: int | None = Field(default=None, ge=1)
    method: str | None = None


class SignalRejected(Payload):
    """`signal.rejected`: refused by the backtester's gate or by the risk manager."""

    stage: Literal["backtester", "risk-manager"]
    rule: str
    reason: str
    strategy: StrategyName
    exchange: Exchange
    symbol: str
    side: SignalSide
    #: The backtester's test when it judged a record (None otherwise): as in `SignalValidated`.
    statistic: float | None = None
    threshold: float | None = None
    trials: int | None = Field(default=None, ge=1)
    method: str | None = None


class OrderApproved(Payload):
    """`order.approved`: the risk gate's sized order. The event id is the client order id."""

    client_order_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    exchange: Exchange
    symbol: str
    side: OrderSide
    amount: PositiveFloat  # base units
    order_type: Literal["market", "limit"] = "market"
    limit_price: PositiveFloat | None = None
    reduce_only: bool = False
    mid_at_decision: PositiveFloat
    notional: NonNegFloat
    leverage: NonNegFloat
    stop: PositiveFloat | None = None
    target: PositiveFloat | None = None
    strategy: StrategyName | None = None
    #: The canary weight (0–100) the risk manager sized with.
    weight_applied: Weight
    #: Why the risk manager sent it when no signal did (e.g. `abort_flatten`: abortPolicy flatten).
    reason: str | None = None


class OrderSubmitted(Payload):
    """`order.submitted`: a live order accepted by the exchange."""

    client_order_id: str
    exchange_order_id: str
    exchange: Exchange
    symbol: str
    side: OrderSide
    amount: PositiveFloat


class OrderFilled(Payload):
    """`order.filled`: a (partial) fill; paper fills walk the book, slippage vs mid at decision.

    `filled` is the base amount of this fill event alone (an order filled in steps sends one event
    per step, each with its own deterministic id); `status` says whether the order is now complete.
    """

    client_order_id: str
    exchange_order_id: str | None = None
    exchange: Exchange
    symbol: str
    side: OrderSide
    requested: PositiveFloat
    filled: PositiveFloat
    avg_price: PositiveFloat
    fee: NonNegFloat
    fee_currency: str = "USDT"
    mid_at_decision: PositiveFloat
    #: Signed slippage in bps against the trader (positive = worse than mid).
    slippage_bps: FiniteFloat
    status: Literal["filled", "partially_filled"]
    paper: bool = True
    reduce_only: bool = False
    strategy: StrategyName | None = None


class OrderCancelled(Payload):
    """`order.cancelled`: the remainder of an order was cancelled."""

    client_order_id: str
    exchange: Exchange
    symbol: str
    reason: str
    filled: NonNegFloat = 0.0


class OrderRejected(Payload):
    """`order.rejected`: the exchange (or the paper engine) refused the order."""

    client_order_id: str
    exchange: Exchange
    symbol: str
    reason: Literal[
        "insufficient_funds",
        "rate_limit",
        "network",
        "exchange_rejected",
        "no_liquidity",
        "invalid",
        "halted",
    ]
    message: str
    retryable: bool = False


#: What the event watcher alerts on (`market.alert` payload `kind`).
AlertKind = Literal[
    "liquidation_cascade",
    "funding_extreme",
    "volatility_spike",
    "stale_data",
    "crossed_book",
    "exchange_divergence",
    "source_down",
    "data_gap",
]


class MarketAlert(Payload):
    """`market.alert`: raised (`active`) and cleared (`active: false`) by the event watcher.

    Scope: `exchange` and `symbol` set = that instrument; only `exchange` = every symbol there;
    neither = everything. `data_gap` reports the scanner's `gap` quality flag (info only).
    """

    kind: AlertKind
    severity: Severity
    active: bool = True
    exchange: Exchange | None = None
    symbol: str | None = None
    reason: str
    value: float | None = None
    threshold: float | None = None
