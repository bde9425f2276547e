"""`apex demo` runs end to end on its own embedded nats-server and dead-letters the malformed event."""

from __future__ import annotations

import io

from rich.console import Console

from apextrader.contracts import TradingPipeline
from apextrader.local.demo import run_demo


async def test_demo_flows_and_dead_letters(example_pipeline: TradingPipeline) -> None:
    out = io.StringIO()
    n_dlq = await run_demo(example_pipeline, duration=2.5, rate=100, console=Console(file=out, width=120))
    text = out.getvalue()
    assert n_dlq >= 1
    assert "missing correlation_id" in text and "feature-engineer-shared" in text
    assert "snapshots through two hops" in text
