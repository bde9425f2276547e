"""The canary under `apex up`: the same pure state machine the operator runs (`apextrader.canary`),
driven by a local loop instead of kopf timers. Requests from `apex canary ... --local` arrive in KV
`canary.request`; the effective weight goes to KV `canary.weight` for the risk managers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apextrader.bus.kv import KV
from apextrader.bus.topology import KV_CANARY_REQUEST, KV_CANARY_STATE, KV_CANARY_WEIGHT
from apextrader.canary.machine import advance, kv_state
from apextrader.contracts import utcnow
from apextrader.contracts.canary_spec import CanarySpec
from apextrader.contracts.status import CanaryStatus


class CanaryRequestError(ValueError):
    pass


def apply_request(canary: CanarySpec, request: dict[str, Any], step_index: int | None = None) -> CanarySpec:
    """The spec after one local request (`set-weight`, `pause`, `resume`, `promote`, `abort`);
    `resume` also releases an indefinite pause at the current `step_index`."""
    action = request.get("action")
    if action == "set-weight":
        if canary.steps is not None:
            raise CanaryRequestError(
                "set-weight is refused on a stepped canary: pause, promote, abort or edit the steps"
            )
        weight = int(request["weight"])
        if not 0 <= weight <= 100:
            raise CanaryRequestError(f"weight must be 0-100, got {weight}")
        return canary.model_copy(update={"weight": weight, "abort": False})
    actions: dict[str, dict[str, Any]] = {
        "pause": {"paused": True},
        "resume": {"paused": False, "resume_step": step_index},
        "promote": {"promote": True, "abort": False},
        "abort": {"abort": True, "promote": False},
        "clear-abort": {"abort": False},
    }
    updates = actions.get(str(action))
    if updates is None:
        raise CanaryRequestError(f"unknown action {action!r}")
    return canary.model_copy(update=updates)


@dataclass
class LocalCanary:
    """Owns the local canary spec and status; `tick()` advances and publishes the weight."""

    kv: KV
    canary: CanarySpec | None
    status: CanaryStatus = field(default_factory=CanaryStatus)
    history: list[tuple[float, int]] = field(default_factory=list)  # (unix time, effective weight)
    last_request_error: str | None = None
    _published: tuple[int, str] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def tick(self, now: datetime | None = None) -> CanaryStatus:
        async with self._lock:  # the view loop and the request watcher both tick
            return await self._tick(now)

    async def _tick(self, now: datetime | None) -> CanaryStatus:
        await self._take_request()
        self.status = advance(self.canary, self.status, now or utcnow())
        weight = self.status.effective_weight if self.canary else 0
        state = kv_state(self.status.phase)
        if self._published != (weight, state):
            await self.kv.put_json(KV_CANARY_WEIGHT, weight)
            await self.kv.put_json(KV_CANARY_STATE, state)
            self._published = (weight, state)
            self.history.append((time.time(), weight))
        return self.status

    async def _take_request(self) -> None:
        request = await self.kv.get_json(KV_CANARY_REQUEST)
        if not request:
            return
        await self.kv.delete(KV_CANARY_REQUEST)
        if self.canary is None:
            self.last_request_error = "this pipeline has no canary"
            return
        try:
            self.canary = apply_request(self.canary, request, self.status.step_index)
            self.last_request_error = None
        except (CanaryRequestError, KeyError, ValueError) as exc:
            self.last_request_error = str(exc)
