"""A weight edit reaches the running risk managers through KV without a restart (< 2 s, measured)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import orjson
import pytest

from apextrader.bus.topology import kv_bucket, subject
from apextrader.local.localbus import admin_login
from tests.e2e.apex_cli import apex, finish, start_up, wait_runtime

pytestmark = pytest.mark.slow


async def _watch_weight_change(nats_url: str, data_dir: Path) -> tuple[float, list[int]]:
    # the local bus has users: watch as its admin, with the login `apex up` left in runtime.json
    runtime = json.loads((data_dir / "runtime.json").read_text())
    nc = await nats.connect(nats_url, **admin_login(runtime))
    try:
        js = nc.jetstream()
        kv = await js.key_value(kv_bucket("btc-perp"))
        approvals: list[int] = []

        async def on_approved(msg: nats.aio.msg.Msg) -> None:
            approvals.append(int(orjson.loads(msg.data)["data"]["weight_applied"]))

        await nc.subscribe(subject("btc-perp", "order.approved", "canary"), cb=on_approved)
        requests = await kv.watch("canary.request", include_history=False)
        watcher = await kv.watch("applied.risk-manager.canary.>", include_history=False)
        result = await asyncio.to_thread(
            apex, "canary", "set-weight", "btc-perp", "25", "--local", "--data-dir", str(data_dir)
        )
        assert result.returncode == 0, result.stdout + result.stderr
        # Measured between server timestamps: the request landing in KV -> the canary risk manager's
        # echo of the new weight (the CLI's own interpreter start-up is not the bus's latency).
        requested_at = None
        async for entry in requests:
            if entry is not None and entry.value:
                requested_at = entry.created
                break
        await requests.stop()
        applied_at = None
        async for entry in watcher:
            if entry is not None and entry.value and orjson.loads(entry.value)["weight"] == 25:
                applied_at = entry.created
                # the capital base the canary now sizes against: 25 % of capital
                assert orjson.loads(entry.value)["track_weight"] == 25
                break
        await watcher.stop()
        assert requested_at is not None and applied_at is not None
        elapsed = (applied_at - requested_at).total_seconds()
        assert elapsed is not None
        start = len(approvals)
        await asyncio.sleep(20)
        return elapsed, approvals[start:]
    finally:
        await nc.close()


def test_weight_5_to_25_is_applied_within_two_seconds(tmp_path: Path) -> None:
    data_dir = tmp_path / "weight"
    proc = start_up(data_dir, "--duration", "45s")
    runtime = wait_runtime(data_dir, proc)
    time.sleep(3)
    elapsed, later = asyncio.run(asyncio.wait_for(_watch_weight_change(runtime["nats_url"], data_dir), 40))
    print(f"weight 5 -> 25 applied by the canary risk manager in {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0
    # position sizing follows: every canary approval after the change was sized with 25 %
    assert set(later) <= {25}
    summary = finish(proc, data_dir)
    assert [w for _, w in summary["weight_changes"]][-1] == 25
