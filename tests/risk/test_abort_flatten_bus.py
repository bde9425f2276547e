"""abortPolicy flatten on a real bus: when KV `canary.state` turns `aborted` (what the operator and
`apex up` write), the canary's risk manager closes its positions at market, each order saying why,
and the canary's execution fills them; the echo says what was done."""

from __future__ import annotations

from pathlib import Path

import yaml

from apextrader.bus.kv import KV
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import KV_CANARY_STATE, KV_CANARY_WEIGHT, kv_applied_key, kv_bucket
from apextrader.contracts import OrderApprovedEvent, SignalValidatedEvent
from apextrader.execution.agent import ExecutionAgent
from apextrader.local.nats_server import EmbeddedNats
from apextrader.risk.agent import RiskManagerAgent
from tests.fixtures.agents import eventually, read, running, write_pipeline
from tests.risk.test_risk_execution_bus import PIPE, snapshot_event, validated

ETH = ("binance", "ETH/USDT:USDT")


async def test_flatten_closes_the_canarys_positions_with_a_reason(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    pfile = write_pipeline(tmp_path, canary=True)
    pfile.write_text(pfile.read_text().replace("canary:\n", "canary:\n    abortPolicy: flatten\n", 1))
    async with (
        running(ExecutionAgent, "execution", nats_server, pfile, track="canary"),
        running(RiskManagerAgent, "risk-manager", nats_server, pfile, track="canary") as run,
    ):
        assert yaml.safe_load(pfile.read_text())["spec"]["canary"]["abortPolicy"] == "flatten"
        assert run.nc is not None
        js = run.nc.jetstream()
        pub = Publisher(js)
        risk = run.agent
        assert isinstance(risk, RiskManagerAgent)
        kv = await KV.open(js, kv_bucket(PIPE))
        await pub.publish(snapshot_event("ETH/USDT:USDT", 100.0, depth=10_000.0))
        entry = validated("ETH/USDT:USDT")
        await pub.publish(
            SignalValidatedEvent.new(entry.data, pipeline=PIPE, source_agent="backtester", track="canary")
        )
        await eventually(lambda: ETH in risk.book.positions, what="canary position")

        await kv.put_json(KV_CANARY_WEIGHT, 0)
        await kv.put_json(KV_CANARY_STATE, "aborted")
        await eventually(lambda: ETH not in risk.book.positions, what="position flattened")
        approved = [
            e for e in await read(js, PIPE, "order.approved", "canary") if isinstance(e, OrderApprovedEvent)
        ]
        applied = await kv.get_json(kv_applied_key("risk-manager", "canary", "test-0"))
    closing = [e.data for e in approved if e.data.reason == "abort_flatten"]
    assert len(closing) == 1 and closing[0].reduce_only and closing[0].side == "sell"
    assert closing[0].amount == approved[0].data.amount  # the whole entry, nothing more
    assert applied["abort_policy"] == "flatten" and applied["open_positions"] == 0
