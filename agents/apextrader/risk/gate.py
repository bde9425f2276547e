"""The final risk gate: one signal in, one sized order or one refusal naming its rule out.

Entries are sized fixed-fractionally (risk `riskPerTrade` of the track's equity over the stop
distance), shrunk to the tightest cap (per-symbol notional, gross, net, leverage, margin headroom,
maintenance margin), rounded down to the lot step, and verified against every limit with pending
orders counted. Exits (`flat`, or an entry against an open position, which closes it) are
reduce-only and always allowed: cutting risk is never refused by a halt or the kill-switch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from apextrader.contracts.canary_spec import AbortPolicy
from apextrader.contracts.payloads import OrderApproved, SignalProposed
from apextrader.contracts.spec import RiskLimits
from apextrader.risk.alerts import ActiveAlerts
from apextrader.risk.limits import Exposure, breaches, exposure
from apextrader.risk.margin import ContractTerms, contract_terms, leverage_used, round_down
from apextrader.risk.portfolio import Instrument, Portfolio

#: Stop distance in ATRs when a signal has an ATR but no stop.
DEFAULT_STOP_ATR = 2.0
#: Caps are applied at this fraction so fill slippage does not push a position over one.
CAP_BUFFER = 0.99


@dataclass(frozen=True)
class Approved:
    order: OrderApproved


@dataclass(frozen=True)
class Refused:
    rule: str
    reason: str


Decision = Approved | Refused


@dataclass(frozen=True)
class GateState:
    """What the gate decides with besides the book: the track's capital share and switches."""

    share: float
    weight: int
    halted: bool = False
    killed: bool = False
    #: Visible book notional per instrument and side (`buy` takes the asks), from snapshots.
    liquidity: Mapping[tuple[Instrument, str], float] | None = None
    #: Largest share of that visible notional one entry may take (bounds its slippage).
    max_book_participation: float = 1.0
    #: Bars the market has moved on since the signal's bar closed (from the latest mark); None: unknown.
    bars_behind: float | None = None
    #: The canary is aborted and this is its `abortPolicy` (None: not aborted).
    aborted: AbortPolicy | None = None


def _side(signed: float) -> Literal["buy", "sell"]:
    return "buy" if signed > 0 else "sell"


@dataclass(frozen=True)
class _Ask:
    """One signal seen against the book: what every step of `decide` reads."""

    signal: SignalProposed
    client_order_id: str
    inst: Instrument
    price: float
    #: Held position plus every pending order (entries included).
    held: float
    #: What an exit may close: the filled position less exits already pending (never pending
    #: entries, which may still be rejected).
    closable: float
    want: int  # +1 long, -1 short, 0 flat
    terms: ContractTerms
    order_type: Literal["market", "limit"]

    @classmethod
    def of(
        cls,
        signal: SignalProposed,
        coid: str,
        book: Portfolio,
        limits: RiskLimits,
        order_type: Literal["market", "limit"],
    ) -> _Ask:
        inst: Instrument = (signal.exchange, signal.symbol)
        return cls(
            signal=signal,
            client_order_id=coid,
            inst=inst,
            price=book.mark_of(inst) or signal.price,
            held=book.position_qty(inst) + book.pending_qty(inst),
            closable=book.position_qty(inst) + book.pending_qty(inst, reduce_only=True),
            want={"long": 1, "short": -1, "flat": 0}[signal.side],
            terms=contract_terms(signal.exchange, signal.symbol, limits),
            order_type=order_type,
        )

    @property
    def is_exit(self) -> bool:
        """`flat`, or an entry against an open position (which closes it)."""
        return self.want == 0 or (self.closable != 0 and math.copysign(1, self.closable) != self.want)


def _order(ask: _Ask, book: Portfolio, state: GateState, signed_qty: float, reduce_only: bool) -> Approved:
    sig, price = ask.signal, ask.price
    notional = abs(signed_qty) * price
    equity = state.share + book.pnl()
    return Approved(
        OrderApproved(
            client_order_id=ask.client_order_id,
            exchange=sig.exchange,
            symbol=sig.symbol,
            side=_side(signed_qty),
            amount=abs(signed_qty),
            order_type=ask.order_type,
            limit_price=price if ask.order_type == "limit" else None,
            reduce_only=reduce_only,
            mid_at_decision=price,
            notional=notional,
            leverage=notional / equity if equity > 0 else 0.0,
            stop=sig.stop,
            target=sig.target,
            strategy=sig.strategy,
            weight_applied=state.weight,
        )
    )


def _exit(ask: _Ask, book: Portfolio, state: GateState) -> Decision:
    """Close what is held (net of pending exits), reduce-only: never refused by a halt or the
    kill-switch, only by abortPolicy hold (the user asked to keep the canary's positions)."""
    if state.aborted == "hold":
        return Refused("abort_hold", "the canary is aborted with abortPolicy hold: positions are kept")
    if abs(ask.closable) < ask.terms.amount_step / 2:
        return Refused("no_position", f"nothing to close on {ask.signal.exchange} {ask.signal.symbol}")
    return _order(ask, book, state, -ask.closable, reduce_only=True)


def _entry_refusal(
    ask: _Ask, book: Portfolio, state: GateState, limits: RiskLimits, alerts: ActiveAlerts
) -> Refused | None:
    """The switches and account limits that forbid any new position, in order of precedence."""
    if state.bars_behind is not None and state.bars_behind > limits.signal_expiry_bars:
        return Refused(
            "stale_signal",
            f"the market is {state.bars_behind:.0f} bars past the signal's bar "
            f"(expires after {limits.signal_expiry_bars})",
        )
    if state.aborted is not None:
        return Refused("canary_aborted", f"the canary is aborted (abortPolicy {state.aborted}): no entries")
    if state.weight <= 0 or state.share <= 0:
        return Refused("zero_weight", f"the track's capital weight is {state.weight} %")
    if state.killed or book.drawdown(state.share) >= limits.max_drawdown:
        dd = book.drawdown(state.share)
        return Refused("max_drawdown", f"kill-switch: drawdown {dd:.2%} >= {limits.max_drawdown:.2%}")
    if book.daily_loss(state.share) >= limits.max_daily_loss:
        return Refused(
            "max_daily_loss", f"daily loss {book.daily_loss(state.share):.2%} >= {limits.max_daily_loss:.2%}"
        )
    if state.halted:
        return Refused("halt", "trading halted (KV halt = true)")
    if alerts.severity(ask.inst) == "halt":
        return Refused("halt_alert", alerts.reason(ask.inst, "halt"))
    if abs(ask.held) > 0:
        return Refused(
            "already_positioned", f"already {'long' if ask.held > 0 else 'short'} {ask.signal.symbol}"
        )
    return None


def _stop_distance(ask: _Ask) -> float | Refused:
    """Price distance to the stop (the signal's, or DEFAULT_STOP_ATR ATRs), on the losing side."""
    sig, price = ask.signal, ask.price
    stop = sig.stop
    if stop is None and sig.atr:
        stop = price - ask.want * DEFAULT_STOP_ATR * sig.atr
    if stop is None or stop <= 0:
        return Refused("no_stop", "the signal has neither a stop nor an ATR to size from")
    distance = (price - stop) * ask.want
    if distance <= 0:
        return Refused("invalid_stop", f"stop {stop} is on the wrong side of {price} for a {sig.side}")
    return distance


def _caps(
    ask: _Ask, book: Portfolio, state: GateState, limits: RiskLimits, risk_budget: float, distance: float
) -> tuple[dict[str, float], Exposure, float]:
    """Room left under each cap, in notional (x >= 0 more in the direction `want`)."""
    equity = state.share + book.pnl()
    exp = exposure(book, state.share, limits)
    lev = leverage_used(ask.terms, limits)
    caps = {
        "risk_per_trade": risk_budget / distance * ask.price,
        "max_position_notional": CAP_BUFFER * limits.max_position_pct * equity
        - abs(exp.notional.get(ask.inst, 0.0)),
        "max_gross_exposure": CAP_BUFFER * limits.max_gross_exposure * equity - exp.gross,
        "max_net_exposure": CAP_BUFFER * limits.max_net_exposure * equity - ask.want * exp.net,
        "max_leverage": CAP_BUFFER * limits.max_leverage * equity - exp.gross,
        "margin_headroom": (CAP_BUFFER * (1 - limits.margin_headroom) * equity - exp.initial_margin) * lev,
        "maintenance_margin": (CAP_BUFFER * equity - exp.maintenance_margin) / ask.terms.maintenance_rate,
    }
    side = "buy" if ask.want > 0 else "sell"
    visible = state.liquidity.get((ask.inst, side)) if state.liquidity else None
    if visible is not None:
        caps["book_liquidity"] = state.max_book_participation * visible
    return caps, exp, lev


def _entry(
    ask: _Ask, book: Portfolio, state: GateState, limits: RiskLimits, alerts: ActiveAlerts
) -> Decision:
    """Fixed-fractional size from the stop distance, shrunk to the tightest cap, rounded down to the
    lot step, then verified independently against every limit."""
    distance = _stop_distance(ask)
    if isinstance(distance, Refused):
        return distance
    equity = state.share + book.pnl()
    if equity <= 0:
        return Refused("equity", f"track equity is {equity:.2f}")
    risk_budget = equity * limits.risk_per_trade
    if alerts.severity(ask.inst) == "reduce":
        risk_budget *= limits.reduce_factor
    caps, exp, lev = _caps(ask, book, state, limits, risk_budget, distance)
    if exp.open_positions >= limits.max_open_positions:
        return Refused(
            "max_open_positions", f"{exp.open_positions} positions open (max {limits.max_open_positions})"
        )
    rule = min(caps, key=lambda k: caps[k])
    price, terms = ask.price, ask.terms
    qty = round_down(max(0.0, caps[rule]) / price, terms.amount_step)
    if qty * price < terms.min_notional:
        binding = rule if caps[rule] < terms.min_notional else "min_notional"
        return Refused(
            binding, f"size {qty} ({qty * price:.2f} notional) is below the minimum {terms.min_notional}"
        )
    # The independent check: the book with this order on top must hold every limit.
    after = breaches(exp.plus(ask.inst, ask.want * qty * price, lev, terms.maintenance_rate), limits)
    if after:
        return Refused(after[0], f"the order would breach {', '.join(after)}")
    return _order(ask, book, state, ask.want * qty, reduce_only=False)


def decide(
    signal: SignalProposed,
    client_order_id: str,
    book: Portfolio,
    state: GateState,
    limits: RiskLimits,
    alerts: ActiveAlerts,
    order_type: Literal["market", "limit"] = "market",
) -> Decision:
    """One signal in, one sized order or one named refusal out (pure: reads, never changes, the book)."""
    ask = _Ask.of(signal, client_order_id, book, limits, order_type)
    if ask.is_exit:
        return _exit(ask, book, state)
    return _entry_refusal(ask, book, state, limits, alerts) or _entry(ask, book, state, limits, alerts)


def flatten_orders(
    book: Portfolio, ids: Mapping[Instrument, str], weight: int, reason: str = "abort_flatten"
) -> list[OrderApproved]:
    """Reduce-only market orders closing every open position net of pending exits (abortPolicy
    flatten), each carrying `reason`; `ids` gives each instrument's client order id."""
    out = []
    for inst, coid in ids.items():
        closable = book.position_qty(inst) + book.pending_qty(inst, reduce_only=True)
        price = book.mark_of(inst)
        if closable == 0 or price is None:
            continue
        out.append(
            OrderApproved(
                client_order_id=coid,
                exchange=inst[0],  # type: ignore[arg-type]
                symbol=inst[1],
                side=_side(-closable),
                amount=abs(closable),
                reduce_only=True,
                mid_at_decision=price,
                notional=abs(closable) * price,
                leverage=0.0,
                weight_applied=weight,
                reason=reason,
            )
        )
    return out
