"""The scanner's clock: ticks at `hz` wall-clock rate, market time advancing `speed` times faster.

`speed=None` means as fast as the consumer takes it (no sleeping). Ticks are scheduled against the
monotonic clock (no drift); a consumer that falls behind skips the sleep rather than the ticks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

#: Market seconds per wall second for offline sources when nothing says otherwise: 10 one-minute
#: bars a second, so the 60 s demo sees 600 bars after its backfill (docs/conventions.md §6).
DEFAULT_OFFLINE_SPEED = 600.0
#: Unpaced ticks between two yields to the event loop.
UNPACED_YIELD_EVERY = 16


async def ticks(hz: float, speed: float | None, step_when_unpaced: float) -> AsyncIterator[float]:
    """Yield the market seconds elapsed since the previous tick."""
    if speed is None:
        n = 0
        while True:
            yield step_when_unpaced
            n += 1
            if n % UNPACED_YIELD_EVERY == 0:  # let the event loop breathe (not every tick: that
                await asyncio.sleep(0)  # costs a loop iteration, a poll syscall, per few snapshots)
    interval = 1.0 / hz
    deadline = time.monotonic()
    while True:
        deadline += interval
        yield interval * speed
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            deadline = time.monotonic()
