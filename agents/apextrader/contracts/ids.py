"""Event ids: 32 lowercase hex characters; derived ids are deterministic so redeliveries de-duplicate."""

from __future__ import annotations

import hashlib
import uuid

ID_PATTERN = r"^[0-9a-f]{32}$"


def new_id() -> str:
    """A fresh random id (for events that start a chain, e.g. a market snapshot)."""
    return uuid.uuid4().hex


def derive_id(causation_id: str, event_type: str, track: str, n: int = 0) -> str:
    """The id of the n-th event of `event_type` derived from `causation_id` on `track`.

    A handler that is redelivered the same input reproduces the same ids, so JetStream's
    `Nats-Msg-Id` de-duplication drops the repeats and the exchange sees one client order id.
    """
    digest = hashlib.sha256(f"{causation_id}|{event_type}|{track}|{n}".encode()).hexdigest()
    return digest[:32]
