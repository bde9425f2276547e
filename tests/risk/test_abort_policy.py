"""`spec.canary.abortPolicy` in the gate: what an aborted canary does with its positions."""

from __future__ import annotations

import pytest

from apextrader.contracts import derive_id
from apextrader.contracts.spec import RiskLimits
from apextrader.risk.alerts import ActiveAlerts
from apextrader.risk.gate import Approved, GateState, Refused, decide, flatten_orders
from apextrader.risk.portfolio import Portfolio

from .helpers import signal

ETH = ("binance", "ETH/USDT:USDT")
BTC = ("binance", "BTC/USDT:USDT")
COID = derive_id("b" * 32, "order.approved", "canary", 0)


def long_book() -> Portfolio:
    book = Portfolio()
    book.apply_fill("f1", "c1", ETH, 10.0, 100.0, 0.0, done=True)
    book.mark(ETH, 101.0)
    return book


def gate(side: str, book: Portfolio, aborted: str | None):  # type: ignore[no-untyped-def]
    state = GateState(share=5_000.0, weight=5, aborted=aborted)  # type: ignore[arg-type]
    return decide(signal(side=side), COID, book, state, RiskLimits(), ActiveAlerts())  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["hold", "drain", "flatten"])
def test_no_entry_while_aborted(policy: str) -> None:
    d = gate("long", Portfolio(), policy)
    assert isinstance(d, Refused) and d.rule == "canary_aborted" and policy in d.reason


def test_drain_allows_exits_and_hold_keeps_positions() -> None:
    drained = gate("flat", long_book(), "drain")
    assert isinstance(drained, Approved) and drained.order.reduce_only and drained.order.amount == 10.0
    held = gate("flat", long_book(), "hold")
    assert isinstance(held, Refused) and held.rule == "abort_hold"
    assert isinstance(gate("long", Portfolio(), None), Approved)  # not aborted: entries as usual


def test_flatten_closes_every_position_with_a_reason_and_never_twice() -> None:
    book = long_book()
    book.apply_fill("f2", "c2", BTC, -0.5, 50_000.0, 0.0, done=True)
    book.mark(BTC, 49_000.0)
    orders = flatten_orders(book, {ETH: "1" * 32, BTC: "2" * 32}, weight=0)
    by_symbol = {o.symbol: o for o in orders}
    assert by_symbol["ETH/USDT:USDT"].side == "sell" and by_symbol["ETH/USDT:USDT"].amount == 10.0
    assert by_symbol["BTC/USDT:USDT"].side == "buy" and by_symbol["BTC/USDT:USDT"].amount == 0.5
    assert all(o.reduce_only and o.reason == "abort_flatten" and o.order_type == "market" for o in orders)
    for o in orders:  # pending exits count: a second flatten (a restart) closes nothing more
        book.add_pending(
            o.client_order_id, (o.exchange, o.symbol), o.amount * (1 if o.side == "buy" else -1), True, 0.0
        )
    assert flatten_orders(book, {ETH: "3" * 32, BTC: "4" * 32}, weight=0) == []
