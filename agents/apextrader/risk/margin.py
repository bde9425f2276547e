"""Contract terms per exchange perpetual: the exchange's leverage cap, maintenance margin rate of its
first tier, lot step and minimum notional. Initial margin = notional / leverage used; maintenance
margin = notional x maintenance rate (first bracket: the position sizes this gate allows stay in it).

Rates are the exchanges' published tier-1 values for USDT-margined linear perpetuals; an unknown
contract falls back to the spec's `risk.maintenanceMarginRate` and conservative defaults.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

from apextrader.contracts.spec import RiskLimits


@dataclass(frozen=True)
class ContractTerms:
    max_leverage: float
    maintenance_rate: float
    amount_step: float
    min_notional: float


#: (exchange, base asset) -> tier-1 terms (Binance USDⓈ-M, Bybit linear, OKX USDT swap).
_KNOWN: Final[dict[tuple[str, str], ContractTerms]] = {
    ("binance", "BTC"): ContractTerms(125.0, 0.004, 0.001, 100.0),
    ("binance", "ETH"): ContractTerms(100.0, 0.005, 0.001, 20.0),
    ("bybit", "BTC"): ContractTerms(100.0, 0.005, 0.001, 5.0),
    ("bybit", "ETH"): ContractTerms(100.0, 0.005, 0.01, 5.0),
    ("okx", "BTC"): ContractTerms(100.0, 0.004, 0.0001, 5.0),
    ("okx", "ETH"): ContractTerms(100.0, 0.005, 0.001, 5.0),
}
_DEFAULT_STEP: Final = 0.001
_DEFAULT_MIN_NOTIONAL: Final = 5.0
_DEFAULT_MAX_LEVERAGE: Final = 20.0


def contract_terms(exchange: str, symbol: str, limits: RiskLimits) -> ContractTerms:
    """Terms of `symbol` (ccxt unified, e.g. `BTC/USDT:USDT`) on `exchange`; the spec's maintenance
    rate is a floor so a user can be more conservative than the exchange."""
    return _terms(exchange, symbol, limits.maintenance_margin_rate)


@functools.lru_cache(maxsize=4096)
def _terms(exchange: str, symbol: str, maintenance_floor: float) -> ContractTerms:
    base = symbol.split("/", 1)[0]
    known = _KNOWN.get((exchange, base))
    if known is None:
        return ContractTerms(_DEFAULT_MAX_LEVERAGE, maintenance_floor, _DEFAULT_STEP, _DEFAULT_MIN_NOTIONAL)
    return ContractTerms(
        known.max_leverage,
        max(known.maintenance_rate, maintenance_floor),
        known.amount_step,
        known.min_notional,
    )


def leverage_used(terms: ContractTerms, limits: RiskLimits) -> float:
    """The leverage positions are opened at: the spec's cap, never above the exchange's."""
    return min(limits.max_leverage, terms.max_leverage)


def round_down(amount: float, step: float) -> float:
    """Round an amount down to the lot step (rounding down never breaches a cap)."""
    if amount <= 0:
        return 0.0
    # The tiny epsilon keeps 0.3 / 0.1 = 2.9999999 from losing a whole step.
    steps = math.floor(amount / step + 1e-9)
    return round(steps * step, 12)
