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
from apextrader.risk.limits import breaches, exposure
from apextrader.risk.margin import contract_terms, leverage_used, round_down
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


def decide(
    signal: SignalProposed,
    client_order_id: str,
    book: Portfolio,
    state: GateState,
    limits: RiskLimits,
    alerts: ActiveAlerts,
    order_type: Literal["market", "limit"] = "market",
) -> Decision:
    inst: Instrument = (signal.exchange, signal.symbol)
    price = book.mark_of(inst) or signal.price
    held = book.position_qty(inst) + book.pending_qty(inst)
    # What an exit may close: the filled position less exits already pending (never pending entries,
    # which may still be rejected).
    closable = book.position_qty(inst) + book.pending_qty(inst, reduce_only=True)
    want = {"long": 1, "short": -1, "flat": 0}[signal.side]
    terms = contract_terms(signal.exchange, signal.symbol, limits)

    def order(signed_qty: float, reduce_only: bool) -> Approved:
        notional = abs(signed_qty) * price
        equity = state.share + book.pnl()
        return Approved(
            OrderApproved(
                client_order_id=client_order_id,
                exchange=signal.exchange,
                symbol=signal.symbol,
                side=_side(signed_qty),
                amount=abs(signed_qty),
                order_type=order_type,
                limit_price=price if order_type == "limit" else None,
                reduce_only=reduce_only,
                mid_at_decision=price,
                notional=notional,
                leverage=notional / equity if equity > 0 else 0.0,
                stop=signal.stop,
                target=signal.target,
                strategy=signal.strategy,
                weight_applied=state.weight,
            )
        )

    # Exits: close what is held (net of pending orders), reduce-only.
    if want == 0 or (closable != 0 and math.copysign(1, closable) != want):
        if state.aborted == "hold":
            return Refused("abort_hold", "the canary is aborted with abortPolicy hold: positions are kept")
        if abs(closable) < terms.amount_step / 2:
            return Refused("no_position", f"nothing to close on {signal.exchange} {signal.symbol}")
        return order(-closable, reduce_only=True)

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
    severity = alerts.severity(inst)
    if severity == "halt":
        return Refused("halt_alert", alerts.reason(inst, "halt"))
    if abs(held) > 0:
        return Refused("already_positioned", f"already {'long' if held > 0 else 'short'} {signal.symbol}")

    # Fixed-fractional size from the stop distance.
    stop = signal.stop
    if stop is None and signal.atr:
        stop = price - want * DEFAULT_STOP_ATR * signal.atr
    if stop is None or stop <= 0:
        return Refused("no_stop", "the signal has neither a stop nor an ATR to size from")
    distance = (price - stop) * want
    if distance <= 0:
        return Refused("invalid_stop", f"stop {stop} is on the wrong side of {price} for a {signal.side}")
    equity = state.share + book.pnl()
    if equity <= 0:
        return Refused("equity", f"track equity is {equity:.2f}")
    risk_budget = equity * limits.risk_per_trade
    if severity == "reduce":
        risk_budget *= limits.reduce_factor
    # Room left under each cap, in notional (x >= 0 more in the direction `want`).
    exp = exposure(book, state.share, limits)
    lev = leverage_used(terms, limits)
    caps = {
        "risk_per_trade": risk_budget / distance * price,
        "max_position_notional": CAP_BUFFER * limits.max_position_pct * equity
        - abs(exp.notional.get(inst, 0.0)),
        "max_gross_exposure": CAP_BUFFER * limits.max_gross_exposure * equity - exp.gross,
        "max_net_exposure": CAP_BUFFER * limits.max_net_exposure * equity - want * exp.net,
        "max_leverage": CAP_BUFFER * limits.max_leverage * equity - exp.gross,
        "margin_headroom": (CAP_BUFFER * (1 - limits.margin_headroom) * equity - exp.initial_margin) * lev,
        "maintenance_margin": (CAP_BUFFER * equity - exp.maintenance_margin) / terms.maintenance_rate,
    }
    visible = state.liquidity.get((inst, "buy" if want > 0 else "sell")) if state.liquidity else None
    if visible is not None:
        caps["book_liquidity"] = state.max_book_participation * visible
    if exp.open_positions >= limits.max_open_positions:
        return Refused(
            "max_open_positions", f"{exp.open_positions} positions open (max {limits.max_open_positions})"
        )
    rule = min(caps, key=lambda k: caps[k])
    qty = round_down(max(0.0, caps[rule]) / price, terms.amount_step)
    if qty * price < terms.min_notional:
        binding = rule if caps[rule] < terms.min_notional else "min_notional"
        return Refused(
            binding, f"size {qty} ({qty * price:.2f} notional) is below the minimum {terms.min_notional}"
        )
    # The independent check: the book with this order on top must hold every limit.
    after = breaches(exp.plus(inst, want * qty * price, lev, terms.maintenance_rate), limits)
    if after:
        return Refused(after[0], f"the order would breach {', '.join(after)}")
    return order(want * qty, reduce_only=False)


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
