"""Contract terms per exchange perpetual: the exchange's leverage cap, maintenance margin rate of its
first tier, lot step and minimum notional. Initial margin = notional / leverage used; maintenance
margin = notional x maintenance rate (first bracket: the position sizes this gate allows stay in it).

Rates are the exchanges' published tier-1 values for USDT-margined linear perpetuals (owned by
`apextrader.venues.profiles`); an unknown contract falls back to the spec's `risk.maintenanceMarginRate` and conservative defaults.
"""

from __future__ import annotations

import functools
import math

from apextrader.contracts.spec import RiskLimits
from apextrader.venues.profiles import (
    DEFAULT_MAX_LEVERAGE,
    DEFAULT_MIN_NOTIONAL,
    DEFAULT_STEP,
    ContractTerms,
    known_terms,
)

__all__ = ["ContractTerms", "contract_terms", "leverage_used", "round_down"]


def contract_terms(exchange: str, symbol: str, limits: RiskLimits) -> ContractTerms:
    """Terms of `symbol` (ccxt unified, e.g. `BTC/USDT:USDT`) on `exchange`; the spec's maintenance
    rate is a floor so a user can be more conservative than the exchange."""
    return _terms(exchange, symbol, limits.maintenance_margin_rate)


@functools.lru_cache(maxsize=4096)
def _terms(exchange: str, symbol: str, maintenance_floor: float) -> ContractTerms:
    known = known_terms(exchange, symbol)
    if known is None:
        return ContractTerms(DEFAULT_MAX_LEVERAGE, maintenance_floor, DEFAULT_STEP, DEFAULT_MIN_NOTIONAL)
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
