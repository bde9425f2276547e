"""The dead-letter queue: one stream per pipeline (`APEX_<P>_DLQ`, subjects `apex.<p>.dlq.<agent>.<track>`).

An entry's body is the original message bytes, unchanged; its headers are the original headers (NATS
ones renamed `Apex-Orig-*`) plus the `Apex-Dlq-*` headers below: reason, error, original subject,
stream and sequence, delivery count, agent, track, time. Replay republishes the body with the
original headers to the original subject under a new `Nats-Msg-Id` (`<id>.replay.<n>`, so the
de-duplication window does not swallow it) and deletes the entry only after the PubAck.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from apextrader.bus.errors import BusError
from apextrader.bus.publisher import MSG_ID
from apextrader.bus.topology import dlq_subject
from apextrader.contracts.names import AgentId, Track

REASON: Final = "Apex-Dlq-Reason"
ERROR: Final = "Apex-Dlq-Error"
SUBJECT: Final = "Apex-Dlq-Subject"
STREAM: Final = "Apex-Dlq-Stream"
SEQUENCE: Final = "Apex-Dlq-Seq"
DELIVERIES: Final = "Apex-Dlq-Deliveries"
AGENT: Final = "Apex-Dlq-Agent"
TRACK: Final = "Apex-Dlq-Track"
AT: Final = "Apex-Dlq-At"
#: On a replayed message: how many times it has been replayed (so the next replay id is new).
REPLAY: Final = "Apex-Replay"
_ORIG_PREFIX: Final = "Apex-Orig-"
_ERROR_MAX: Final = 2000


def _header_value(text: str) -> str:
    """Header values are one line of printable text."""
    flat = " ".join(text.split())
    return flat[:_ERROR_MAX]


@dataclass(frozen=True)
class DeadLetter:
    """What goes to the DLQ for one failed delivery."""

    pipeline: str
    agent: AgentId
    track: Track
    reason: str
    error: str
    subject: str
    stream: str
    stream_seq: int
    deliveries: int
    data: bytes
    headers: Mapping[str, str]

    def entry_headers(self) -> dict[str, str]:
        out = {(_ORIG_PREFIX + k if k.startswith("Nats-") else k): v for k, v in self.headers.items()}
        out.update(
            {
                # A crash between this publish and the ack redelivers; the same id de-duplicates it.
                MSG_ID: f"dlq.{self.stream}.{self.stream_seq}",
                REASON: self.reason,
                ERROR: _header_value(self.error) or self.reason,
                SUBJECT: self.subject,
                STREAM: self.stream,
                SEQUENCE: str(self.stream_seq),
                DELIVERIES: str(self.deliveries),
                AGENT: self.agent,
                TRACK: self.track,
                AT: datetime.now(UTC).isoformat(),
            }
        )
        return out


async def send_to_dlq(js: JetStreamContext, letter: DeadLetter, ack_timeout: float = 5.0) -> PubAck:
    """Publish the dead letter and wait for the PubAck (`duplicate` when it was already there)."""
    subj = dlq_subject(letter.pipeline, letter.agent, letter.track)
    return await js.publish(subj, letter.data, timeout=ack_timeout, headers=letter.entry_headers())


@dataclass(frozen=True)
class DlqEntry:
    """One stored dead letter (`seq` is its id in the DLQ stream)."""

    stream: str
    seq: int
    time: datetime | None
    data: bytes
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get(REASON, "?")

    @property
    def error(self) -> str:
        return self.headers.get(ERROR, "")

    @property
    def original_subject(self) -> str:
        return self.headers.get(SUBJECT, "")

    @property
    def agent(self) -> str:
        return self.headers.get(AGENT, "?")

    @property
    def track(self) -> str:
        return self.headers.get(TRACK, "?")

    @property
    def deliveries(self) -> int:
        return int(self.headers.get(DELIVERIES, "0") or 0)

    @property
    def event_id(self) -> str:
        return self.headers.get(_ORIG_PREFIX + MSG_ID, "")

    def original_headers(self) -> dict[str, str]:
        """The headers the message had before it was dead-lettered (minus the DLQ's own)."""
        out: dict[str, str] = {}
        for key, value in self.headers.items():
            if key.startswith("Apex-Dlq-") or key == MSG_ID:
                continue
            out[key.removeprefix(_ORIG_PREFIX)] = value
        return out


async def dlq_streams(js: JetStreamContext, pipeline: str | None = None) -> list[str]:
    """The DLQ stream of `pipeline`, or of every pipeline on this server."""
    from apextrader.bus.topology import stream_name

    if pipeline is not None:
        return [stream_name(pipeline, "DLQ")]
    infos = await js.streams_info()
    return sorted(i.config.name for i in infos if i.config.name and i.config.name.endswith("_DLQ"))


async def get_entry(js: JetStreamContext, stream: str, seq: int) -> DlqEntry | None:
    try:
        raw = await js.get_msg(stream, seq)
    except NotFoundError:
        return None
    headers = dict(raw.headers or {})
    when = datetime.fromisoformat(headers[AT]) if AT in headers else None
    return DlqEntry(stream=stream, seq=int(raw.seq or seq), time=when, data=raw.data or b"", headers=headers)


async def iter_entries(js: JetStreamContext, stream: str) -> AsyncIterator[DlqEntry]:
    """Every entry still in the stream, oldest first (deleted ones are skipped)."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return
    if info.state.messages == 0:
        return
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        entry = await get_entry(js, stream, seq)
        if entry is not None:
            yield entry


async def replay(js: JetStreamContext, entry: DlqEntry, ack_timeout: float = 5.0) -> str:
    """Republish an entry to its original subject; delete it once JetStream acknowledged the publish.

    Returns the `Nats-Msg-Id` used (`<event id>.replay.<n>`).
    """
    if not entry.original_subject:
        raise BusError(f"DLQ entry {entry.seq} has no {SUBJECT} header: cannot replay")
    headers = entry.original_headers()
    n = int(headers.get(REPLAY, "0") or 0) + 1
    base_id = entry.event_id or f"{entry.stream}.{entry.seq}"
    headers[REPLAY] = str(n)
    headers[MSG_ID] = f"{base_id}.replay.{n}"
    await js.publish(entry.original_subject, entry.data, timeout=ack_timeout, headers=headers)
    await js.delete_msg(entry.stream, entry.seq)
    return headers[MSG_ID]
