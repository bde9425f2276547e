"""What each exchange needs, in one place: its ccxt classes and options, order-book and stream
limits, OHLCV paging, how an order is found by client order id, and the contract terms of its
USDT-margined linear perpetuals.

Market data (the scanner), the risk gate (contract terms) and execution (orders) all read these
profiles; nothing else spells an exchange's parameters. Pure data: no ccxt import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

Lookup = Literal["by_client_id", "scan"]


@dataclass(frozen=True)
class ContractTerms:
    """Tier-1 terms of one perpetual: the leverage cap, maintenance rate, lot step, min notional."""

    max_leverage: float
    maintenance_rate: float
    amount_step: float
    min_notional: float


@dataclass(frozen=True)
class VenueProfile:
    exchange: str
    #: ccxt class for public data (also the ccxt.pro class of the same name for streams).
    data_class: str
    #: ccxt options for public data (only the linear perpetual books the pipeline trades).
    data_options: dict[str, Any]
    #: ccxt class and options for trading USDT-margined linear perpetuals.
    trade_class: str
    trade_options: dict[str, Any]
    #: Order-book depths the REST endpoint accepts.
    book_limits: tuple[int, ...]
    #: Most candles one OHLCV request returns.
    ohlcv_page: int
    #: How an order is found by client order id: queried directly, or by scanning recent orders
    #: (Bybit's unified account queries only by exchange id).
    lookup: Lookup
    #: The websocket transport streams this venue (candles, book, trades, liquidations via ccxt.pro).
    streaming: bool = False
    #: Book depths its stream accepts (None: any, a diff-synced book).
    stream_book_limits: tuple[int, ...] | None = None
    #: base asset -> tier-1 contract terms.
    contracts: dict[str, ContractTerms] = field(default_factory=dict)
    #: Exchanges that need an API passphrase beside key and secret.
    needs_password: bool = False


PROFILES: Final[dict[str, VenueProfile]] = {
    "binance": VenueProfile(
        exchange="binance",
        data_class="binance",
        data_options={"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}},
        trade_class="binanceusdm",
        trade_options={},
        book_limits=(5, 10, 20, 50, 100, 500, 1000),
        ohlcv_page=1500,
        lookup="by_client_id",
        streaming=True,
        contracts={
            "BTC": ContractTerms(125.0, 0.004, 0.001, 100.0),
            "ETH": ContractTerms(100.0, 0.005, 0.001, 20.0),
        },
    ),
    "bybit": VenueProfile(
        exchange="bybit",
        data_class="bybit",
        data_options={"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}},
        trade_class="bybit",
        trade_options={"defaultType": "swap"},
        book_limits=(1, 25, 50, 100, 200, 500),
        ohlcv_page=1000,
        lookup="scan",
        streaming=True,
        stream_book_limits=(50, 200, 1000),
        contracts={
            "BTC": ContractTerms(100.0, 0.005, 0.001, 5.0),
            "ETH": ContractTerms(100.0, 0.005, 0.01, 5.0),
        },
    ),
    "okx": VenueProfile(
        exchange="okx",
        data_class="okx",
        data_options={"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}},
        trade_class="okx",
        trade_options={"defaultType": "swap"},
        book_limits=(1, 5, 10, 20, 50, 100, 400),
        ohlcv_page=300,
        lookup="by_client_id",
        # OKX stays on REST polling (its REST path already carries liquidations); ccxt.pro has its
        # streams too, but they are not wired and tested here yet.
        streaming=False,
        contracts={
            "BTC": ContractTerms(100.0, 0.004, 0.0001, 5.0),
            "ETH": ContractTerms(100.0, 0.005, 0.001, 5.0),
        },
        needs_password=True,
    ),
}

#: Terms for a contract no profile lists (conservative).
DEFAULT_STEP: Final = 0.001
DEFAULT_MIN_NOTIONAL: Final = 5.0
DEFAULT_MAX_LEVERAGE: Final = 20.0


def profile(exchange: str) -> VenueProfile:
    return PROFILES[exchange]


def streaming_venues() -> frozenset[str]:
    return frozenset(ex for ex, p in PROFILES.items() if p.streaming)


def book_limit(exchange: str, levels: int) -> int:
    """The smallest REST book depth the venue accepts that covers `levels`."""
    allowed = PROFILES[exchange].book_limits
    return next((n for n in allowed if n >= levels), allowed[-1])


def stream_book_limit(exchange: str, levels: int) -> int | None:
    """The book depth to subscribe to (None: the venue's default, a full diff-synced book)."""
    allowed = PROFILES[exchange].stream_book_limits
    if allowed is None:
        return None
    return next((n for n in allowed if n >= levels), allowed[-1])


def known_terms(exchange: str, symbol: str) -> ContractTerms | None:
    """The published tier-1 terms of `symbol` (ccxt unified, `BTC/USDT:USDT`), or None."""
    p = PROFILES.get(exchange)
    return None if p is None else p.contracts.get(symbol.split("/", 1)[0])
