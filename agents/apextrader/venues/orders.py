"""The order state machine shared by paper and live execution:
new -> partially_filled -> filled / cancelled / rejected (partially_filled may repeat)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OrderState(StrEnum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    #: The venue may or may not have the order (a timeout after it may have accepted): never a
    #: state an order is tracked in, only what a venue call can answer.
    UNKNOWN = "unknown"


TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED})
_ALLOWED: dict[OrderState, frozenset[OrderState]] = {
    OrderState.NEW: frozenset(
        {OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED}
    ),
    OrderState.PARTIALLY_FILLED: frozenset(
        {OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED}
    ),
    OrderState.FILLED: frozenset(),
    OrderState.CANCELLED: frozenset(),
    OrderState.REJECTED: frozenset(),
    OrderState.UNKNOWN: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


@dataclass
class OrderTracker:
    """One order's state and filled amount; every change goes through `advance`."""

    client_order_id: str
    requested: float
    filled: float = 0.0
    state: OrderState = OrderState.NEW

    @classmethod
    def resume(cls, client_order_id: str, requested: float, filled: float) -> OrderTracker:
        """An order some of which was filled before a restart (as the ORDERS stream says)."""
        state = OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.NEW
        return cls(client_order_id, requested, filled, state)

    def advance(self, to: OrderState) -> None:
        if to not in _ALLOWED[self.state]:
            raise IllegalTransition(f"order {self.client_order_id}: {self.state} -> {to} is not allowed")
        self.state = to

    def add_fill(self, amount: float) -> OrderState:
        """Record `amount` more filled; moves to filled or partially_filled."""
        self.filled += amount
        done = self.filled >= self.requested * (1 - 1e-9)
        self.advance(OrderState.FILLED if done else OrderState.PARTIALLY_FILLED)
        return self.state

    @property
    def remaining(self) -> float:
        return max(0.0, self.requested - self.filled)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL
