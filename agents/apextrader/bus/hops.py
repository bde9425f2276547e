"""Where one hop's time goes, per consumer: an opt-in profile of the middleware chain.

With `APEX_HOP_PROFILE=DIR` every agent records, for each message its consumers handle:

| phase | from → to |
|---|---|
| `wait` | the event's `timestamp` (set by the publishing agent when it made the event) → our chain starts: the upstream publish, the server, the delivery, and the time the message sat in our batch |
| `decode` | size check, JSON and schema validation (`bus.codec`) |
| `handle` | the agent's handler, without publishing |
| `publish` | publishing the handler's outputs, PubAcks awaited |
| `settle` | the ack (or DLQ write) and the metrics after the handler |
| `chain` | the whole chain for this message |

and writes `DIR/<agent>-<track>-<pid>.json` when it stops (`scripts/profile-hops` runs `apex up` with
it and prints the table; docs/performance.md). Off, the chain pays one `None` test per message.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

PHASES: Final = ("wait", "decode", "handle", "publish", "settle", "chain")
#: Besides the phases, each sample's wall-clock start (s), to cut the start-up backlog away.
AT: Final = "at"
#: Samples kept per phase (the first ones; a profile run is short).
MAX_SAMPLES: Final = 200_000


@dataclass
class HopMarks:
    """`perf_counter` marks one delivery collects on its way through the chain."""

    start: float = 0.0
    decoded: float = 0.0
    handled: float = 0.0
    published: float = 0.0
    #: `time.time()` at the start minus the event's own timestamp (s).
    wait: float = 0.0
    #: `time.time()` when the event was decoded.
    at: float = 0.0


@dataclass
class HopProfile:
    """The phase durations (s) of the messages one agent process handled, per event type."""

    agent: str
    track: str
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def record(self, event_type: str, marks: HopMarks, settled: float) -> None:
        if not marks.decoded:  # did not decode: no phases to attribute
            return
        per = self.samples.get(event_type)
        if per is None:
            per = self.samples[event_type] = {p: [] for p in (*PHASES, AT)}
        if len(per["chain"]) >= MAX_SAMPLES:
            return
        handled = marks.handled or marks.decoded
        published = marks.published or handled
        per["wait"].append(marks.wait)
        per["decode"].append(marks.decoded - marks.start)
        per["handle"].append(handled - marks.decoded)
        per["publish"].append(published - handled)
        per["settle"].append(settled - published)
        per["chain"].append(settled - marks.start)
        per[AT].append(marks.at)

    def dump(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.agent}-{self.track}-{os.getpid()}.json"
        doc = {"agent": self.agent, "track": self.track, "samples": self.samples}
        path.write_text(json.dumps(doc))
        return path


def mark_decoded(marks: HopMarks, event_timestamp: float) -> None:
    """The decode mark, and the wait since the event's own timestamp (wall clocks of this host or
    its NTP peers)."""
    marks.decoded = time.perf_counter()
    marks.at = time.time()
    marks.wait = marks.at - event_timestamp
