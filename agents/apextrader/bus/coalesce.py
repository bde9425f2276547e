"""Coalescing of intrabar market data when a consumer falls behind (docs/bus.md, "Overload").

The scanner marks each forming-bar (not closed) `market.snapshot` with the header `Apex-Coalesce:
<exchange>|<symbol>|<timeframe>` (`COALESCE`); closed bars, alerts, signals and orders never carry it.
A consumer fetches what is pending, so a batch of more than one message means it is behind; within
such a batch a marked message is *superseded* when a later message of the same batch carries the same
key: the latest forming snapshot of a market wins. Superseded messages are acked without being
decoded or handled and counted as shed (`apex_snapshots_shed_total`).

The rule is deliberately the simplest honest one: only a later *coalescible* snapshot of the same
key supersedes. A closed bar of that market does not (it is a different event: the forming snapshot
before it may carry intrabar state, e.g. a quality flag, that the closed bar does not repeat), and an
unmarked message is never superseded. Everything kept keeps its order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: How many messages a consumer that just shed may ask for next (up to what is pending): the wider
#: the window, the more snapshots of each market it holds, the fewer it handles. Kept well under a
#: durable's `max_ack_pending` (1000); what is kept is at most one snapshot per market plus the
#: closed bars, so the window costs little handling time.
WINDOW: Final = 512

#: The header naming a coalescible message's market; absent on everything that must be handled.
COALESCE: Final = "Apex-Coalesce"


def coalesce_key(exchange: str, symbol: str, timeframe: str) -> str:
    """`<exchange>|<symbol>|<timeframe>`: one forming bar's series (symbols contain `/` and `:`)."""
    return f"{exchange}|{symbol}|{timeframe}"


def superseded(keys: Sequence[str | None]) -> frozenset[int]:
    """Indexes of the messages of one fetched batch (their `COALESCE` header values, None when
    absent, in delivery order) that a later message of the same key supersedes."""
    if len(keys) < 2:
        return frozenset()  # not behind: nothing is shed
    seen: set[str] = set()
    shed: set[int] = set()
    for i in range(len(keys) - 1, -1, -1):  # from the latest: the first of each key seen wins
        key = keys[i]
        if key is None:
            continue
        if key in seen:
            shed.add(i)
        else:
            seen.add(key)
    return frozenset(shed)
