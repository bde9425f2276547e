"""A feature-engineer stand-in run as a real process by the crash tests (`python -m tests.bus.crash_agent`).

It derives one `features.computed` per snapshot and appends each handled event id to the journal file
named by `APEX_TEST_JOURNAL` (flushed per line, so a kill -9 loses nothing that was handled).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

from apextrader.contracts import (
    Envelope,
    Features,
    FeaturesComputed,
    FeaturesComputedEvent,
    MarketSnapshotEvent,
)
from apextrader.contracts.names import EventType
from apextrader.runtime import Agent, AgentRunner, AgentSettings, Handler


class JournalingFeatures(Agent):
    agent_id = "feature-engineer"

    def __init__(self, ctx: object) -> None:
        super().__init__(ctx)  # type: ignore[arg-type]
        self.journal = open(os.environ["APEX_TEST_JOURNAL"], "a", buffering=1)  # noqa: SIM115
        self.delay = float(os.environ.get("APEX_TEST_DELAY", "0.001"))

    def subscriptions(self) -> Mapping[EventType, Handler]:
        return {"market.snapshot": self.on_snapshot}

    async def on_snapshot(self, ev: Envelope) -> list[Envelope]:
        assert isinstance(ev, MarketSnapshotEvent)
        await asyncio.sleep(self.delay)
        self.journal.write(ev.id + "\n")
        data = FeaturesComputed(
            exchange=ev.data.exchange,
            symbol=ev.data.symbol,
            timeframe="1m",
            bar=ev.data.bar,
            features=Features(),
        )
        return [ev.derive(FeaturesComputedEvent, data, source_agent="feature-engineer")]

    async def stop(self) -> None:
        self.journal.close()


if __name__ == "__main__":
    settings = AgentSettings(agent="feature-engineer", track="shared")
    sys.exit(asyncio.run(AgentRunner(JournalingFeatures, settings).run()))
