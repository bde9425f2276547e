"""ccxt async clients for the three exchanges' linear perpetuals, and how their errors are classed.

`streaming=True` gives the ccxt.pro class of the same venue (REST calls and websocket streams on
one client, same markets, same error mapping).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async

from apextrader.contracts.payloads import Exchange
from apextrader.venues.profiles import PROFILES, book_limit, profile, stream_book_limit, streaming_venues

__all__ = ["OHLCV_PAGE", "STREAMING", "book_limit", "make_exchange", "stream_book_limit"]

#: Venues the `websocket` transport streams (candles, book, trades, liquidations through ccxt.pro).
STREAMING: frozenset[Exchange] = streaming_venues()  # type: ignore[assignment]
#: Most candles one OHLCV request returns.
OHLCV_PAGE: dict[str, int] = {ex: p.ohlcv_page for ex, p in PROFILES.items()}


def market_types_for(exchange: Exchange, symbol: str) -> list[str]:
    """Only the market type a symbol needs: `BTC/USDT` is spot, `BTC/USDT:USDT` a linear perpetual."""
    if ":" not in symbol:
        return ["spot"]
    return list(profile(exchange).data_options["fetchMarkets"]["types"])


def make_exchange(
    exchange: Exchange,
    *,
    timeout_ms: int = 10_000,
    rate_limit_ms: float | None = None,
    market_types: list[str] | None = None,
    streaming: bool = False,
) -> ccxt_async.Exchange:
    """A public-data client: ccxt's own rate limiter on (at the venue's published pace unless
    `rate_limit_ms` says otherwise), no credentials, loading only `market_types` (default: the
    linear perpetuals the pipeline trades); the ccxt.pro class when `streaming`."""
    p = profile(exchange)
    cls_name, options = p.data_class, p.data_options
    if streaming:
        import ccxt.pro as ccxt_pro  # the websocket classes only for the websocket transport

        cls = getattr(ccxt_pro, cls_name)
    else:
        cls = getattr(ccxt_async, cls_name)
    if market_types is not None:
        options = {**options, "fetchMarkets": {"types": market_types}}
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms, "options": options}
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    client: ccxt_async.Exchange = cls(config)
    return client


def _rewrite_hosts(node: Any, scheme: str, base: str) -> Any:
    if isinstance(node, dict):
        return {k: _rewrite_hosts(v, scheme, base) for k, v in node.items()}
    if isinstance(node, str) and node.startswith(scheme):
        return re.sub(rf"^{scheme}s?://[^/]+", base, node)
    return node


def point_at(client: ccxt_async.Exchange, base_url: str) -> None:
    """Send every REST call to `base_url` + the venue's path (a mirror, a proxy, a recording)."""
    client.urls["api"] = _rewrite_hosts(client.urls["api"], "http", base_url.rstrip("/"))


def point_ws_at(client: ccxt_async.Exchange, base_url: str) -> None:
    """Open every websocket at `base_url` (`ws://host:port/prefix`) + the venue's path."""
    client.urls["api"] = _rewrite_hosts(client.urls["api"], "ws", base_url.rstrip("/"))


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits, timeouts, maintenance, connection trouble."""
    return isinstance(exc, ccxt.NetworkError | TimeoutError | ConnectionError)


def describe(exc: BaseException) -> str:
    """A one-line reason for logs and alerts (ccxt messages can hold whole response bodies)."""
    kind = type(exc).__name__
    text = str(exc).replace("\n", " ")
    return f"{kind}: {text[:160]}" if text else kind


@dataclass
class Backoff:
    """Exponential back-off with jitter: base, base*factor, ... capped at `cap` seconds."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.1

    def delay(self, attempt: int) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return raw * (1 + random.uniform(-self.jitter, self.jitter))
