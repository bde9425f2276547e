"""The consumer chain's own CPU cost per delivery, in process (printed, never asserted on timing):
every step of `bus.middleware` runs; the ack goes to a sink instead of a server, so the figure is
the chain alone, without the network that `test_bench_bus.py` measures."""

from __future__ import annotations

import os
import time
from typing import Any

from nats.aio.msg import Msg

from apextrader.bus.middleware import ChainConfig, CompletedIds, build_chain
from apextrader.bus.publisher import event_headers
from apextrader.bus.topology import subject
from apextrader.contracts import Envelope
from tests.bus.helpers import snapshot

N = 20_000 if os.environ.get("APEX_BENCH_FULL") == "1" else 2_000


class _AckSink:
    """Where `Msg.ack()` publishes its +ACK: nowhere (no server in this measurement)."""

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Meta:
    num_delivered = 1

    class sequence:
        stream = 1


async def test_bench_chain_cost_per_delivery() -> None:
    async def handle(_: Envelope) -> None:
        return None

    cfg = ChainConfig(
        js=None,  # type: ignore[arg-type]
        pipeline="btc-perp",
        agent="feature-engineer",
        track="shared",
        stream="APEX_BTC_PERP_MARKET",
        max_deliver=3,
        backoff_s=[0.1],
        handlers={"market.snapshot": handle},
        publisher=_AckSink(),  # type: ignore[arg-type]
        completed=CompletedIds(),
    )
    chain = build_chain(cfg)
    msgs = []
    for i in range(N):
        ev = snapshot(i)
        m = Msg(_AckSink(), subject=subject(ev.pipeline, ev.type, ev.track), reply="r", data=ev.to_json())  # type: ignore[arg-type]
        m.headers, m._metadata = event_headers(ev), _Meta  # type: ignore[assignment]
        msgs.append(m)
    started = time.perf_counter()
    outcomes = [(await chain(m)).outcome for m in msgs]
    elapsed = time.perf_counter() - started
    assert outcomes == ["acked"] * N  # every delivery went through every step
    print(
        f"\n[bench chain] {N} deliveries: {elapsed / N * 1e6:.1f} us each ({N / elapsed:,.0f}/s), in process"
    )
