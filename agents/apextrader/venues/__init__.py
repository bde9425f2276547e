"""Venues: what each exchange needs (profiles) and where orders go (`ExecutionVenue`).

A library layer: market, risk and execution import it; it imports no agent. `CcxtVenue` lives in
`apextrader.venues.ccxt_venue` and is imported only for live trading (ccxt is large).
"""

from apextrader.venues.base import ExecutionVenue, OpenAtVenue, Outcome
from apextrader.venues.orders import OrderState, OrderTracker
from apextrader.venues.paper_venue import PaperVenue
from apextrader.venues.profiles import PROFILES, ContractTerms, VenueProfile, profile

__all__ = [
    "PROFILES",
    "ContractTerms",
    "ExecutionVenue",
    "OpenAtVenue",
    "OrderState",
    "OrderTracker",
    "Outcome",
    "PaperVenue",
    "VenueProfile",
    "profile",
]
