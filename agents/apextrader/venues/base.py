"""The execution venue interface: submit, refresh and cancel, all answering one `Outcome`.

`PaperVenue` (simulated fills) and `CcxtVenue` (a real exchange through ccxt) implement it, so the
execution agent has a single code path. An outcome the venue cannot vouch for (a timeout after it
may have accepted the order) is `OrderState.UNKNOWN`, never a rejection: the caller keeps the
order's exposure reserved and asks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from apextrader.contracts.payloads import MarketSnapshot, OrderApproved
from apextrader.venues.orders import OrderState

RejectReason = Literal[
    "insufficient_funds", "rate_limit", "network", "exchange_rejected", "no_liquidity", "invalid", "expired"
]
FillModel = Literal["book", "bar"]


@dataclass(frozen=True)
class Outcome:
    """What the venue says about one order, cumulative: `filled` is the total so far."""

    state: OrderState
    exchange_order_id: str | None = None
    filled: float = 0.0
    avg_price: float | None = None
    fee: float | None = None
    reason: RejectReason | None = None
    #: Why it was rejected / cancelled / is unknown (redacted of secrets).
    message: str = ""
    retryable: bool = False
    #: The order already existed at the venue (redelivery or restart): nothing was submitted.
    recovered: bool = False
    #: How the fill price was found: walking an order book, or the bar model (no depth).
    fill_model: FillModel = "book"

    @property
    def unknown(self) -> bool:
        return self.state is OrderState.UNKNOWN

    @classmethod
    def not_known(cls, message: str) -> Outcome:
        return cls(OrderState.UNKNOWN, message=message, retryable=True)


@dataclass(frozen=True)
class OpenAtVenue:
    """An order the venue lists as working (for reconciliation at start)."""

    client_order_id: str
    exchange_order_id: str
    outcome: Outcome


class ExecutionVenue(Protocol):
    """Where orders go. `approved_at` is the `order.approved` publish time; `prior_filled` what the
    ORDERS stream already reports as filled for this client order id."""

    #: Real money: fills are reported with `paper: false`.
    live: bool

    def observe(self, at: datetime, snapshot: MarketSnapshot) -> None:
        """A live market snapshot (books and bars for simulated fills; a real venue ignores it)."""

    async def submit(self, order: OrderApproved, approved_at: datetime, prior_filled: float) -> Outcome:
        """Place the order once (idempotent by client order id); UNKNOWN when it cannot tell."""

    async def refresh(self, order: OrderApproved, exchange_order_id: str | None) -> Outcome:
        """The order's current state at the venue."""

    async def cancel(self, order: OrderApproved, exchange_order_id: str | None) -> Outcome:
        """Cancel what is left of the order."""

    async def open_orders(self, symbols: list[tuple[str, str]]) -> list[OpenAtVenue]:
        """Orders working at the venue for these (exchange, symbol) pairs."""

    def fee_rate(self, exchange: str) -> float:
        """Taker fee as a fraction, for fills whose venue reports none."""

    async def close(self) -> None: ...
