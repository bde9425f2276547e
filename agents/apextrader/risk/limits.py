"""Exposure of a track's book at current marks and the check of every limit against it.

Pending (approved, unsettled) orders count as if filled, entries at full size: the gate must be safe
whatever the execution does with them. `breaches` is what the gate verifies each approval against
and what the agent runs after fills and marks to count observed margin violations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apextrader.contracts.spec import RiskLimits
from apextrader.risk.margin import contract_terms, leverage_used
from apextrader.risk.portfolio import Instrument, Portfolio

#: Relative tolerance for float comparisons against caps.
TOLERANCE = 1e-9

#: Rules counted as margin violations (the Go/No-Go "no margin violations").
MARGIN_RULES = frozenset({"margin_headroom", "maintenance_margin"})


@dataclass(frozen=True)
class Exposure:
    equity: float
    #: Signed notional per instrument, positions plus pending orders, at marks.
    notional: dict[Instrument, float] = field(default_factory=dict)
    initial_margin: float = 0.0
    maintenance_margin: float = 0.0
    #: Sum of |notional| and sum of notional (computed once with the rest).
    gross: float = 0.0
    net: float = 0.0

    @property
    def open_positions(self) -> int:
        return len(self.notional)

    def plus(self, inst: Instrument, notional: float, leverage: float, maintenance_rate: float) -> Exposure:
        """This exposure with one more order of signed `notional` on `inst` (same marks)."""
        old = self.notional.get(inst, 0.0)
        new = old + notional
        changed = dict(self.notional)
        if abs(new) < 1e-12:
            changed.pop(inst, None)
        else:
            changed[inst] = new
        d_abs = abs(new) - abs(old)
        return Exposure(
            self.equity,
            changed,
            self.initial_margin + d_abs / leverage,
            self.maintenance_margin + d_abs * maintenance_rate,
            self.gross + d_abs,
            self.net + notional,
        )


def _price(book: Portfolio, inst: Instrument) -> float:
    mark = book.mark_of(inst)
    if mark is not None:
        return mark
    pos = book.positions.get(inst)
    return pos.avg_price if pos else 0.0


def exposure(
    book: Portfolio,
    share: float,
    limits: RiskLimits,
    extra: tuple[Instrument, float] | None = None,
    include_pending: bool = True,
) -> Exposure:
    """The book's exposure, optionally with one more order (`(instrument, signed qty)`) on top.
    Without pending orders it is what is actually held (what observed violations are counted on)."""
    qty: dict[Instrument, float] = {}
    for inst, pos in book.positions.items():
        qty[inst] = qty.get(inst, 0.0) + pos.qty
    for pend in book.pending.values() if include_pending else ():
        qty[pend.instrument] = qty.get(pend.instrument, 0.0) + pend.remaining
    if extra is not None:
        qty[extra[0]] = qty.get(extra[0], 0.0) + extra[1]
    notional: dict[Instrument, float] = {}
    im = mm = gross = net = 0.0
    for inst, q in qty.items():
        if abs(q) < 1e-12:
            continue
        n = q * _price(book, inst)
        notional[inst] = n
        terms = contract_terms(inst[0], inst[1], limits)
        an = abs(n)
        im += an / leverage_used(terms, limits)
        mm += an * terms.maintenance_rate
        gross += an
        net += n
    return Exposure(share + book.pnl(), notional, im, mm, gross, net)


def _over(value: float, cap: float) -> bool:
    return value > cap + TOLERANCE * max(1.0, abs(cap))


def breaches(exp: Exposure, limits: RiskLimits) -> list[str]:
    """Every limit the exposure breaks, by rule name (empty: all hold)."""
    e = exp.equity
    if not exp.notional:
        return []
    if e <= 0:
        return ["equity"]
    out: list[str] = []
    largest = max(abs(n) for n in exp.notional.values())
    if _over(largest, limits.max_position_pct * e):
        out.append("max_position_notional")
    if _over(exp.gross, limits.max_gross_exposure * e):
        out.append("max_gross_exposure")
    if _over(abs(exp.net), limits.max_net_exposure * e):
        out.append("max_net_exposure")
    if _over(exp.gross, limits.max_leverage * e):
        out.append("max_leverage")
    if exp.open_positions > limits.max_open_positions:
        out.append("max_open_positions")
    if _over(exp.initial_margin, (1 - limits.margin_headroom) * e):
        out.append("margin_headroom")
    if exp.maintenance_margin >= e:
        out.append("maintenance_margin")
    return out
