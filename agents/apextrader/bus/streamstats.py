"""What a stream lost and how full it is, from its own state: the zero-loss accounting and the
`apex_stream_discarded_total` / `apex_stream_fill_ratio` metrics (docs/bus.md, "Retention")."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js import api as js_api

from apextrader.bus.metrics import STREAM_DISCARDED, STREAM_FILL
from apextrader.bus.topology import Topology


def discarded(info: js_api.StreamInfo) -> int:
    """Messages removed from the head under the limits (age, bytes, `discard: old`): with limits
    retention, every sequence below the first one stored (explicit deletes are interior gaps,
    `num_deleted`, and not counted here)."""
    state = info.state
    if not state.messages:
        return int(state.last_seq)
    return int(state.first_seq) - 1


class StreamWatch:
    """Exports per-stream discards (as a counter: only increases are added) and fill ratio."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    async def observe(self, js: JetStreamContext, topology: Topology) -> dict[str, int]:
        out: dict[str, int] = {}
        for decl in topology.streams:
            info = await js.stream_info(decl.name)
            lost = discarded(info)
            step = lost - self._seen.get(decl.name, 0)
            if step > 0:
                STREAM_DISCARDED.labels(decl.name).inc(step)
            self._seen[decl.name] = max(lost, self._seen.get(decl.name, 0))
            if decl.max_bytes > 0:
                STREAM_FILL.labels(decl.name).set(int(info.state.bytes) / decl.max_bytes)
            out[decl.name] = lost
        return out
