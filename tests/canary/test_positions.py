"""After an abort, the status says what the canary still holds (its risk manager's echo), on both
backends: the pure `with_positions` the operator applies, and `apex up`'s LocalCanary on a real KV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NatsClient

from apextrader.bus.kv import KV
from apextrader.bus.topology import kv_applied_key
from apextrader.canary import advance
from apextrader.canary.machine import with_positions
from apextrader.contracts.canary_spec import CanarySpec
from apextrader.contracts.spec import TradingPipelineSpec
from apextrader.local.canary_driver import LocalCanary

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ABORTED = {"weight": 5, "abort": True, "abortPolicy": "hold"}


def test_the_latest_echo_gives_the_count_only_when_aborted() -> None:
    echoes = {
        "applied.risk-manager.canary.a": {"open_positions": 3, "at": "2026-01-01T00:00:01+00:00"},
        "applied.risk-manager.canary.b": {"open_positions": 1, "at": "2026-01-01T00:00:02+00:00"},
    }
    aborted = advance(CanarySpec.model_validate(ABORTED), None, T0)
    message = with_positions(aborted, echoes).message
    assert "abortPolicy hold" in message and message.endswith("holds 1 open position(s)")
    live = advance(CanarySpec.model_validate({"weight": 5}), None, T0)
    assert with_positions(live, echoes) == live


async def test_local_canary_reads_the_canary_echo(nc: NatsClient) -> None:
    kv = KV(await nc.jetstream().create_key_value(bucket="apex-positions"))
    spec = TradingPipelineSpec.model_validate({"symbols": ["BTC/USDT:USDT"], "canary": ABORTED})
    await kv.put_json(kv_applied_key("risk-manager", "canary", "host-1"), {"open_positions": 2, "at": "x"})
    await kv.put_json(kv_applied_key("risk-manager", "stable", "host-1"), {"open_positions": 9, "at": "y"})
    local = LocalCanary(kv=kv, spec=spec)
    await local.tick(T0)
    status = await local.tick(T0 + timedelta(seconds=1))
    assert status.phase == "Aborted" and status.message.endswith("holds 2 open position(s)")
