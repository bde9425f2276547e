"""`market.snapshot` events straight to their wire bytes, without building pydantic models.

Validating a snapshot (bar, 2 x 10 book levels, liquidations: two dozen model instances) and
dumping its envelope cost ~70 µs; at 10,000 snapshots a second that alone is most of a core. The
synthetic source builds its snapshots as plain dicts in `MarketSnapshot`'s field order
(`WireSnapshot`), and `encode_snapshot_event` writes the envelope with orjson. The bytes are the
ones pydantic writes for the same event (orjson's float and `Z`-datetime format is pydantic's; the
tests decode every generated snapshot, validate it and re-encode it to the identical bytes).
Snapshots from the other sources (models) go through `model_dump()` into the same encoder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from apextrader.bus.coalesce import coalesce_key
from apextrader.contracts import MarketSnapshot, MarketSnapshotEvent
from apextrader.contracts.envelope import SCHEMA_VERSION
from apextrader.contracts.ids import new_id

SNAPSHOT: Final = MarketSnapshotEvent.event_type
TRACK: Final = "shared"
_ENVELOPE_FIELDS: Final = ("id", "type", "schema_version", "source_agent", "correlation_id", "causation_id",
                           "timestamp", "origin_ts", "pipeline", "track", "data")  # fmt: skip
if tuple(MarketSnapshotEvent.model_fields) != _ENVELOPE_FIELDS:  # the contract changed: update below
    raise RuntimeError(f"envelope fields changed: {tuple(MarketSnapshotEvent.model_fields)}")


@dataclass(frozen=True, slots=True)
class WireSnapshot:
    """A `MarketSnapshot` as the dict pydantic would dump: every field, in declaration order,
    datetimes UTC. Built by a source that guarantees the model's constraints by construction;
    `model()` validates it (tests, and whoever needs the model)."""

    data: dict[str, Any]

    def model(self) -> MarketSnapshot:
        return MarketSnapshot.model_validate(self.data)


AnySnapshot = MarketSnapshot | WireSnapshot


def wire_data(snap: AnySnapshot) -> dict[str, Any]:
    return snap.data if isinstance(snap, WireSnapshot) else snap.model_dump()


def as_model(snap: AnySnapshot) -> MarketSnapshot:
    return snap.model() if isinstance(snap, WireSnapshot) else snap


def snapshot_id(pipeline: str, snap: AnySnapshot | dict[str, Any]) -> str | None:
    """Deterministic id for a closed bar; None (a fresh id) for a forming one."""
    data = snap if isinstance(snap, dict) else wire_data(snap)
    if not data["closed"]:
        return None
    open_time: datetime = data["bar"]["open_time"]
    key = f"{pipeline}|{data['exchange']}|{data['symbol']}|{data['timeframe']}|{open_time.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def coalesce_of(data: dict[str, Any]) -> str | None:
    """The `Apex-Coalesce` key of a forming-bar snapshot (a later one of the same market supersedes
    it at a consumer that fell behind, docs/bus.md "Overload"); None for a closed bar, which every
    consumer must handle."""
    if data["closed"]:
        return None
    return coalesce_key(data["exchange"], data["symbol"], data["timeframe"])


def encode_snapshot_event(
    data: dict[str, Any], *, pipeline: str, source_agent: str, event_id: str | None, now: datetime
) -> tuple[str, bytes]:
    """(event id, JSON) of a new `market.snapshot` event (a chain start: correlation id = id)."""
    eid = event_id or new_id()
    envelope = {
        "id": eid,
        "type": SNAPSHOT,
        "schema_version": SCHEMA_VERSION,
        "source_agent": source_agent,
        "correlation_id": eid,
        "causation_id": None,
        "timestamp": now,
        "origin_ts": now,
        "pipeline": pipeline,
        "track": TRACK,
        "data": data,
    }
    return eid, orjson.dumps(envelope, option=orjson.OPT_UTC_Z)
