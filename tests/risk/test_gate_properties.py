"""Property: whatever the sequence of signals, price moves, (partial) fills, alerts and halts, no
order the gate approves lets the book breach a limit at the decision's marks.

The limits are re-checked here with an independent ledger (cash flows, not the gate's Portfolio) so
a bug in the gate's own accounting cannot hide a breach.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apextrader.contracts import MarketAlert, derive_id
from apextrader.contracts.spec import RiskLimits
from apextrader.risk.alerts import ActiveAlerts
from apextrader.risk.gate import Approved, GateState, decide
from apextrader.risk.margin import contract_terms
from apextrader.risk.portfolio import Instrument, Portfolio

from .helpers import signal

INSTRUMENTS: list[tuple[Instrument, float]] = [
    (("binance", "BTC/USDT:USDT"), 50_000.0),
    (("binance", "ETH/USDT:USDT"), 3_000.0),
    (("bybit", "BTC/USDT:USDT"), 50_000.0),
    (("okx", "ETH/USDT:USDT"), 3_000.0),
    (("binance", "SOL/USDT:USDT"), 150.0),
]


@dataclass
class Ledger:
    """Independent bookkeeping: cash flows and quantities only."""

    cash: float = 0.0
    qty: dict[Instrument, float] = field(default_factory=dict)
    pending: dict[str, tuple[Instrument, float]] = field(default_factory=dict)

    def fill(self, inst: Instrument, signed: float, price: float, fee: float) -> None:
        self.cash -= signed * price + fee
        self.qty[inst] = self.qty.get(inst, 0.0) + signed

    def gross(self, marks: dict[Instrument, float]) -> float:
        exposure: dict[Instrument, float] = dict(self.qty)
        for inst, q in self.pending.values():
            exposure[inst] = exposure.get(inst, 0.0) + q
        return sum(abs(q * marks[i]) for i, q in exposure.items())

    def check(self, share: float, marks: dict[Instrument, float], limits: RiskLimits) -> list[str]:
        exposure: dict[Instrument, float] = dict(self.qty)
        for inst, q in self.pending.values():
            exposure[inst] = exposure.get(inst, 0.0) + q
        equity = share + self.cash + sum(q * marks[i] for i, q in self.qty.items())
        notional = {i: q * marks[i] for i, q in exposure.items() if abs(q) > 1e-12}
        gross = sum(abs(n) for n in notional.values())
        net = sum(notional.values())
        im = mm = 0.0
        for (ex, sym), n in notional.items():
            terms = contract_terms(ex, sym, limits)
            im += abs(n) / min(limits.max_leverage, terms.max_leverage)
            mm += abs(n) * terms.maintenance_rate
        tol = 1e-6
        bad = []
        if notional and equity <= 0:
            bad.append("equity")
        if any(abs(n) > limits.max_position_pct * equity + tol for n in notional.values()):
            bad.append("max_position_notional")
        if gross > limits.max_gross_exposure * equity + tol:
            bad.append("max_gross_exposure")
        if abs(net) > limits.max_net_exposure * equity + tol:
            bad.append("max_net_exposure")
        if gross > limits.max_leverage * equity + tol:
            bad.append("max_leverage")
        if len(notional) > limits.max_open_positions:
            bad.append("max_open_positions")
        if im > (1 - limits.margin_headroom) * equity + tol:
            bad.append("margin_headroom")
        if notional and mm >= equity:
            bad.append("maintenance_margin")
        return bad


op_signal = st.tuples(
    st.just("signal"),
    st.integers(0, len(INSTRUMENTS) - 1),
    st.sampled_from(["long", "short", "flat"]),
    st.floats(0.0005, 0.2),  # stop distance as a fraction of price
)
op_move = st.tuples(st.just("move"), st.integers(0, len(INSTRUMENTS) - 1), st.floats(-0.25, 0.25))
op_fill = st.tuples(st.just("fill"), st.integers(0, 50), st.floats(0.05, 1.0), st.floats(-0.01, 0.01))
op_alert = st.tuples(
    st.just("alert"),
    st.integers(0, len(INSTRUMENTS) - 1),
    st.sampled_from(["info", "reduce", "halt"]),
    st.booleans(),
)
op_halt = st.tuples(st.just("halt"), st.booleans())
ops = st.lists(
    st.one_of(op_signal, op_signal, op_move, op_fill, op_fill, op_alert, op_halt), min_size=1, max_size=60
)

limits_st = st.builds(
    RiskLimits,
    risk_per_trade=st.floats(0.001, 0.1),
    max_leverage=st.floats(0.5, 20),
    max_position_pct=st.floats(0.05, 1.0),
    max_gross_exposure=st.floats(0.2, 5),
    max_net_exposure=st.floats(0.2, 5),
    max_open_positions=st.integers(1, 5),
    margin_headroom=st.floats(0.0, 0.9),
    maintenance_margin_rate=st.floats(0.001, 0.05),
    max_drawdown=st.floats(0.02, 0.5),
    max_daily_loss=st.floats(0.02, 0.5),
)


@example(
    ops=[
        ("signal", 1, "short", 0.125),
        ("signal", 0, "long", 0.125),
        ("fill", 0, 1.0, 0.0),
        ("signal", 1, "long", 0.125),
    ],
    limits=RiskLimits(
        risk_per_trade=0.0625,
        max_leverage=2.0,
        max_position_pct=1.0,
        max_gross_exposure=2.0,
        max_net_exposure=0.5,
        max_open_positions=2,
        margin_headroom=0.0,
        maintenance_margin_rate=0.03125,
        max_drawdown=0.5,
        max_daily_loss=0.5,
    ),
    share=1000.0,
    weight=50,
)  # closing the filled leg of a hedge (found by hypothesis in CI)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, limits=limits_st, share=st.floats(1_000, 1_000_000), weight=st.integers(1, 100))
def test_no_approved_order_breaches_a_limit(
    ops: list[tuple[object, ...]], limits: RiskLimits, share: float, weight: int
) -> None:
    book, ledger, alerts = Portfolio(), Ledger(), ActiveAlerts()
    marks = {inst: p for inst, p in INSTRUMENTS}
    for inst, p in marks.items():
        book.mark(inst, p)
    halted = False
    orders: list[str] = []
    for n, op in enumerate(ops):
        kind = op[0]
        if kind == "move":
            inst = INSTRUMENTS[int(op[1])][0]  # type: ignore[call-overload]
            marks[inst] *= 1 + float(op[2])  # type: ignore[arg-type]
            book.mark(inst, marks[inst])
        elif kind == "alert":
            inst = INSTRUMENTS[int(op[1])][0]  # type: ignore[call-overload]
            alerts.apply(
                MarketAlert(
                    kind="volatility_spike",
                    severity=op[2],
                    active=bool(op[3]),
                    reason="t",  # type: ignore[arg-type]
                    exchange=inst[0],
                    symbol=inst[1],
                )
            )
        elif kind == "halt":
            halted = bool(op[1])
        elif kind == "fill" and orders:
            coid = orders[int(op[1]) % len(orders)]  # type: ignore[call-overload]
            if coid not in ledger.pending:
                continue
            inst, rest = ledger.pending[coid]
            part = rest * float(op[2])  # type: ignore[arg-type]
            price = marks[inst] * (1 + float(op[3]))  # type: ignore[arg-type]
            fee = abs(part) * price * 0.0005
            done = float(op[2]) >= 0.999 or n % 3 == 0  # sometimes the rest is cancelled
            book.apply_fill(f"fill{n}", coid, inst, part, price, fee, done=done)
            ledger.fill(inst, part, price, fee)
            if done:
                ledger.pending.pop(coid)
            else:
                ledger.pending[coid] = (inst, rest - part)
        elif kind == "signal":
            inst, _ = INSTRUMENTS[int(op[1])]  # type: ignore[call-overload]
            price = marks[inst]
            side = str(op[2])
            stop_dist = price * float(op[3])  # type: ignore[arg-type]
            stop = price - stop_dist if side == "long" else price + stop_dist
            sig = signal(side=side, price=price, stop=stop, exchange=inst[0], symbol=inst[1])  # type: ignore[arg-type]
            coid = derive_id(f"{n:032x}", "order.approved", "stable", 0)
            state = GateState(share=share * weight / 100, weight=weight, halted=halted)
            before = ledger.check(state.share, marks, limits)
            gross_before = ledger.gross(marks)
            d = decide(sig, coid, book, state, limits, alerts)
            if not isinstance(d, Approved):
                continue
            o = d.order
            signed = o.amount if o.side == "buy" else -o.amount
            if o.reduce_only:
                # Exits only ever shrink the position they close.
                held = ledger.qty.get(inst, 0.0) + sum(
                    q for i, q in ledger.pending.values() if i == inst and q * signed < 0
                )
                assert abs(signed) <= abs(held) + 1e-9 and signed * held < 0
            else:
                assert not halted and alerts.severity(inst) != "halt"
                assert book.drawdown(state.share) < limits.max_drawdown
                assert book.daily_loss(state.share) < limits.max_daily_loss
            book.add_pending(coid, inst, signed, o.reduce_only)
            ledger.pending[coid] = (inst, signed)
            orders.append(coid)
            after = ledger.check(state.share, marks, limits)
            if not o.reduce_only:
                assert after == [], f"approved {o} breaches {after}"
            else:
                # An exit may not fix a breach that price moves caused, and never adds one, with one
                # exception a risk gate must allow: closing one leg of a hedge raises |net| (the other
                # leg stands alone). An exit still never adds gross exposure.
                assert set(after) <= set(before) | {"equity", "max_net_exposure"}, (before, after)
                assert ledger.gross(marks) <= gross_before + 1e-9
