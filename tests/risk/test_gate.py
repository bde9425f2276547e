"""The risk gate's rules one by one: sizing, every cap, switches, exits, refusals naming the rule."""

from __future__ import annotations

import pytest

from apextrader.contracts import MarketAlert, derive_id
from apextrader.contracts.spec import RiskLimits
from apextrader.risk.alerts import ActiveAlerts
from apextrader.risk.gate import Approved, GateState, Refused, decide
from apextrader.risk.limits import breaches, exposure
from apextrader.risk.margin import contract_terms, round_down
from apextrader.risk.portfolio import Portfolio, Position

from .helpers import signal

ETH = ("binance", "ETH/USDT:USDT")
BTC = ("binance", "BTC/USDT:USDT")
COID = derive_id("a" * 32, "order.approved", "stable", 0)


def gate(sig, book=None, limits=None, share=100_000.0, weight=100, alerts=None, **kw):  # type: ignore[no-untyped-def]
    return decide(
        sig,
        COID,
        book or Portfolio(),
        GateState(share=share, weight=weight, **kw),
        limits or RiskLimits(),
        alerts or ActiveAlerts(),
    )


def test_fixed_fractional_size_from_stop_distance() -> None:
    # 100k equity x 0.5 % = 500 risked over a 2.0 stop distance -> 250 ETH = 25k notional (< 50k cap).
    d = gate(signal(price=100.0, stop=98.0))
    assert isinstance(d, Approved)
    assert d.order.amount == pytest.approx(250.0)
    assert d.order.side == "buy" and not d.order.reduce_only
    assert d.order.client_order_id == COID
    assert d.order.mid_at_decision == 100.0


def test_short_uses_stop_above_and_atr_fallback() -> None:
    d = gate(signal(side="short", price=100.0, stop=None, atr=1.0))  # stop = 100 + 2 x 1
    assert isinstance(d, Approved) and d.order.side == "sell"
    assert d.order.amount == pytest.approx(250.0)


def test_capital_share_scales_size() -> None:
    d = gate(signal(), share=100_000.0 * 5 / 100, weight=5)
    assert isinstance(d, Approved)
    assert d.order.amount == pytest.approx(12.5)  # 5 % of the 100 % size
    assert d.order.weight_applied == 5


def test_per_symbol_cap_binds_and_names_nothing_when_it_fits() -> None:
    # Stop very close: the fixed-fractional size is huge; the per-symbol cap (50 % x 0.99) binds.
    d = gate(signal(price=100.0, stop=99.99))
    assert isinstance(d, Approved)
    assert d.order.notional == pytest.approx(0.99 * 0.5 * 100_000, rel=1e-6)


@pytest.mark.parametrize(
    ("limits", "rule"),
    [
        (RiskLimits(max_position_pct=0.00001), "max_position_notional"),
        (RiskLimits(risk_per_trade=0.000001), "risk_per_trade"),
        (RiskLimits(margin_headroom=0.9999999, max_leverage=1), "margin_headroom"),
    ],
)
def test_refusals_name_the_binding_rule(limits: RiskLimits, rule: str) -> None:
    d = gate(signal(price=100.0, stop=98.0), limits=limits)
    assert isinstance(d, Refused)
    assert d.rule == rule


def test_gross_and_open_positions_caps_count_existing_and_pending() -> None:
    book = Portfolio()
    book.positions[BTC] = Position(qty=1.0, avg_price=50_000.0)
    book.mark(BTC, 50_000.0)
    book.add_pending("p" * 32, ("bybit", "BTC/USDT:USDT"), 2.0, reduce_only=False)
    book.mark(("bybit", "BTC/USDT:USDT"), 50_000.0)
    limits = RiskLimits(max_gross_exposure=2.0, max_position_pct=1.0, max_net_exposure=2.0)
    d = gate(signal(price=100.0, stop=99.99), book=book, limits=limits)
    assert isinstance(d, Approved)
    # 150k already used (position + pending): the gross cap leaves 0.99 x 200k - 150k.
    assert d.order.notional == pytest.approx(0.99 * 200_000 - 150_000, rel=1e-4)
    exp = exposure(book, 100_000.0, limits, extra=(ETH, d.order.amount))
    assert exp.gross <= 2.0 * 100_000 and breaches(exp, limits) == []
    # Two positions open and a cap of two: a third symbol is refused.
    d2 = gate(signal(), book=book, limits=RiskLimits(max_open_positions=2))
    assert isinstance(d2, Refused) and d2.rule == "max_open_positions"


def test_halt_kv_halt_alert_and_zero_weight_refuse_entries_but_not_exits() -> None:
    book = Portfolio()
    book.positions[ETH] = Position(qty=10.0, avg_price=100.0)
    book.mark(ETH, 100.0)
    alerts = ActiveAlerts()
    alerts.apply(
        MarketAlert(kind="liquidation_cascade", severity="halt", reason="z=5", symbol="ETH/USDT:USDT")
    )
    assert gate(signal(symbol="BTC/USDT:USDT", price=50_000, stop=49_000), halted=True).rule == "halt"  # type: ignore[union-attr]
    d = gate(signal(exchange="bybit"), alerts=alerts)
    assert isinstance(d, Refused) and d.rule == "halt_alert"
    assert gate(signal(), weight=0, share=0.0).rule == "zero_weight"  # type: ignore[union-attr]
    # The exit still goes through under halt, alert and zero weight.
    exit_ = gate(signal(side="flat"), book=book, alerts=alerts, halted=True, weight=0, share=0.0)
    assert isinstance(exit_, Approved)
    assert exit_.order.reduce_only and exit_.order.side == "sell" and exit_.order.amount == 10.0
    # Cleared alert: entries on another symbol flow again.
    alerts.apply(
        MarketAlert(
            kind="liquidation_cascade", severity="halt", active=False, reason="ok", symbol="ETH/USDT:USDT"
        )
    )
    assert isinstance(gate(signal(exchange="bybit"), alerts=alerts), Approved)


def test_reduce_alert_scales_the_risk_budget() -> None:
    alerts = ActiveAlerts()
    alerts.apply(MarketAlert(kind="volatility_spike", severity="reduce", reason="z=6", exchange="binance"))
    d = gate(signal(), alerts=alerts, limits=RiskLimits(reduce_factor=0.5))
    assert isinstance(d, Approved) and d.order.amount == pytest.approx(125.0)


def test_opposite_entry_closes_and_same_side_is_refused() -> None:
    book = Portfolio()
    book.positions[ETH] = Position(qty=-4.0, avg_price=100.0)
    d = gate(signal(side="long"), book=book)
    assert isinstance(d, Approved) and d.order.reduce_only and d.order.side == "buy" and d.order.amount == 4.0
    d2 = gate(signal(side="short"), book=book)
    assert isinstance(d2, Refused) and d2.rule == "already_positioned"
    assert gate(signal(side="flat")).rule == "no_position"  # type: ignore[union-attr]


def test_bad_stops_are_refused() -> None:
    assert gate(signal(stop=None)).rule == "no_stop"  # type: ignore[union-attr]
    assert gate(signal(side="long", stop=101.0)).rule == "invalid_stop"  # type: ignore[union-attr]


def test_kill_switch_after_drawdown_and_daily_loss() -> None:
    from datetime import date

    book = Portfolio()
    book.mark(ETH, 100.0, market_day=date(2026, 1, 5))
    book.apply_fill("f1", "c1", ETH, 100.0, 100.0, 0.0, done=True)
    book.mark(ETH, 130.0)  # +3000 peak
    book.mark(ETH, 85.0)  # -1500: 4500 below the 13k peak equity (34.6 %), 15 % lost today
    limits = RiskLimits(max_drawdown=0.3, max_daily_loss=0.5)
    d = gate(
        signal(symbol="BTC/USDT:USDT", price=50_000, stop=49_000), book=book, share=10_000.0, limits=limits
    )
    assert isinstance(d, Refused) and d.rule == "max_drawdown"
    d2 = gate(
        signal(symbol="BTC/USDT:USDT", price=50_000, stop=49_000),
        book=book,
        share=10_000.0,
        limits=RiskLimits(max_drawdown=0.9, max_daily_loss=0.1),
    )
    assert isinstance(d2, Refused) and d2.rule == "max_daily_loss"
    # A new market day resets the daily baseline, not the drawdown.
    book.mark(ETH, 85.0, market_day=date(2026, 1, 6))
    d3 = gate(
        signal(symbol="BTC/USDT:USDT", price=50_000, stop=49_000),
        book=book,
        share=10_000.0,
        limits=RiskLimits(max_drawdown=0.9, max_daily_loss=0.1, max_open_positions=6),
    )
    assert not (isinstance(d3, Refused) and d3.rule == "max_daily_loss")


def test_fills_are_idempotent_and_realise_pnl() -> None:
    book = Portfolio()
    assert book.apply_fill("f1", "c1", ETH, 2.0, 100.0, 0.1, done=True)
    assert not book.apply_fill("f1", "c1", ETH, 2.0, 100.0, 0.1, done=True)
    book.apply_fill("f2", "c2", ETH, -3.0, 110.0, 0.1, done=True)  # close 2 (+20) and open 1 short
    assert book.realised == pytest.approx(20.0)
    assert book.position_qty(ETH) == pytest.approx(-1.0)
    assert book.positions[ETH].avg_price == 110.0
    book.mark(ETH, 100.0)
    assert book.pnl() == pytest.approx(20.0 + 10.0 - 0.2)


def test_contract_terms() -> None:
    terms = contract_terms("binance", "BTC/USDT:USDT", RiskLimits(maintenance_margin_rate=0.01))
    assert terms.maintenance_rate == 0.01 and terms.max_leverage == 125
    assert round_down(0.3, 0.1) == pytest.approx(0.3)
    assert round_down(0.2999, 0.1) == pytest.approx(0.2)


def test_entry_capped_by_visible_book_depth() -> None:
    liquidity = {(ETH, "buy"): 8_000.0, (ETH, "sell"): 100_000.0}
    d = gate(signal(price=100.0, stop=98.0), liquidity=liquidity, max_book_participation=0.25)
    assert isinstance(d, Approved) and d.order.notional == pytest.approx(2_000.0)
    thin = gate(signal(price=100.0, stop=98.0), liquidity={(ETH, "buy"): 40.0}, max_book_participation=0.25)
    assert isinstance(thin, Refused) and thin.rule == "book_liquidity"
    # A short takes the bids, which are deep: the fixed-fractional size stands.
    s = gate(signal(side="short", price=100.0, stop=102.0), liquidity=liquidity, max_book_participation=0.25)
    assert isinstance(s, Approved) and s.order.amount == pytest.approx(250.0)


def test_stale_entry_signals_expire_but_exits_never_do() -> None:
    assert isinstance(gate(signal(), bars_behind=None), Approved)  # no mark yet: nothing to judge by
    assert isinstance(gate(signal(), bars_behind=1.0), Approved)  # one bar on: still within expiry
    stale = gate(signal(), bars_behind=2.0)
    assert isinstance(stale, Refused) and stale.rule == "stale_signal" and "2 bars" in stale.reason
    assert isinstance(gate(signal(), bars_behind=2.0, limits=RiskLimits(signal_expiry_bars=3)), Approved)
    book = Portfolio()
    book.positions[ETH] = Position(qty=10.0, avg_price=100.0)
    book.mark(ETH, 100.0)
    assert isinstance(gate(signal(side="flat"), book=book, bars_behind=50.0), Approved)
