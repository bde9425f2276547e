"""What a venue sends is checked where it enters: a malformed message is dropped with a counter
(`apex_input_dropped_total{exchange,kind}`) and one log line, so it can never poison the bars
that follow (a liquidation of size 0 once kept every later closed bar of its symbol from being
published)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from apextrader.bus import metrics
from apextrader.contracts.payloads import Liquidation

log = logging.getLogger(__name__)


def dropped(exchange: str, kind: str, why: str, raw: object) -> None:
    metrics.INPUT_DROPPED.labels(exchange=exchange, kind=kind).inc()
    log.warning(
        "malformed message from the venue dropped",
        extra={"exchange": exchange, "kind": kind, "why": why[:200], "raw": repr(raw)[:200]},
    )


def liquidation(exchange: str, raw: object, parse: Callable[[Any], dict[str, Any]]) -> dict[str, Any] | None:
    """`parse(raw)` -> {side, price, amount, time}, validated as a `Liquidation`; None (dropped,
    counted, logged) when it cannot be read or is not a valid liquidation."""
    try:
        fields = parse(raw)
        Liquidation.model_validate(fields)
    except (KeyError, TypeError, ValueError, ValidationError) as exc:  # ValidationError is a ValueError
        dropped(exchange, "liquidation", f"{type(exc).__name__}: {exc}".replace("\n", " "), raw)
        return None
    return fields
