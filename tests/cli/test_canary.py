"""`apex canary ...` and `apex operator` as a user runs them: subprocesses against kmock over HTTP."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from apextrader.bus.client import connect, ensure_kv
from apextrader.bus.kv import KV
from apextrader.local.nats_server import EmbeddedNats
from tests.operator.harness import NAMESPACE, kube_api

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


async def apex(*args: str) -> tuple[int, str]:
    """The CLI in-process (a thread: its commands run their own event loop while kmock serves here)."""
    from typer.testing import CliRunner

    from apextrader.cli.main import app

    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


async def apex_process(*args: str) -> tuple[int, str]:
    """The CLI as a separate process, as a user (or kubectl, for `kubectl apex`) starts it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from apextrader.cli import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


def cr(**canary: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "manifests" / "pipeline.yaml").read_text())
    doc["metadata"]["namespace"] = NAMESPACE
    if canary:
        doc["spec"]["canary"] = canary
    return copy.deepcopy(doc)


async def test_canary_commands_patch_the_cr(tmp_path: Path) -> None:
    async with kube_api(tmp_path) as (_, kube):
        await kube.create(cr())
        code, out = await apex_process("canary", "set-weight", "btc-perp", "20", "-n", NAMESPACE)
        assert code == 0, out
        spec = (await kube.get("TradingPipeline", NAMESPACE, "btc-perp"))["spec"]  # type: ignore[index]
        assert spec["canary"]["weight"] == 20
        assert spec["canary"]["template"]["strategies"]["breakout"]["lookback"] == 30  # untouched

        code, out = await apex("canary", "set-weight", "btc-perp", "150")
        assert code == 2 and "0-100" in out and "Traceback" not in out

        code, out = await apex("canary", "pause", "btc-perp")
        assert code == 0, out
        assert (await kube.get("TradingPipeline", NAMESPACE, "btc-perp"))["spec"]["canary"]["paused"] is True  # type: ignore[index]

        await kube.patch(
            "TradingPipeline",
            NAMESPACE,
            "btc-perp",
            {
                "status": {
                    "canary": {
                        "phase": "Paused",
                        "declaredWeight": 20,
                        "effectiveWeight": 20,
                        "appliedWeight": {"canary": 20, "stable": 80},
                        "message": "paused",
                    }
                }
            },
            subresource="status",
        )
        code, out = await apex("canary", "status", "btc-perp")
        assert code == 0, out
        assert "phase Paused" in out and "applied canary 20%" in out

        await kube.patch("TradingPipeline", NAMESPACE, "btc-perp", {"status": {"canary": {"stepIndex": 3}}},
                         subresource="status")  # fmt: skip
        code, out = await apex("canary", "resume", "btc-perp")
        assert code == 0 and "past step 3" in out, out
        canary = (await kube.get("TradingPipeline", NAMESPACE, "btc-perp"))["spec"]["canary"]  # type: ignore[index]
        assert canary["paused"] is False and canary["resumeStep"] == 3  # releases an indefinite pause there

        code, out = await apex("canary", "promote", "btc-perp")
        assert code == 0, out
        spec = (await kube.get("TradingPipeline", NAMESPACE, "btc-perp"))["spec"]  # type: ignore[index]
        assert "canary" not in spec
        assert spec["strategies"]["breakout"]["lookback"] == 30  # folded from the template
        assert spec["strategies"]["breakout"]["stopAtr"] == 2.0  # base kept

        code, out = await apex("canary", "pause", "btc-perp")
        assert code == 1 and "has no spec.canary" in out
        code, out = await apex("canary", "status", "nope")
        assert code == 1 and "not found" in out


async def test_set_weight_on_stepped_canary_is_refused(tmp_path: Path) -> None:
    async with kube_api(tmp_path) as (_, kube):
        await kube.create(cr(steps=[{"setWeight": 5}, {"pause": {"duration": "1h"}}, {"setWeight": 50}]))
        code, out = await apex("canary", "set-weight", "btc-perp", "30")
        assert code == 1 and "stepped" in out and "pause, promote, abort or edit the steps" in out
        spec = (await kube.get("TradingPipeline", NAMESPACE, "btc-perp"))["spec"]  # type: ignore[index]
        assert "weight" not in spec["canary"]


async def test_local_writes_canary_request(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    nc = await connect(nats_server.url)
    try:
        await ensure_kv(nc.jetstream(), "apex-btc-perp")
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        (data_dir / "runtime.json").write_text(
            json.dumps({"pipeline": "btc-perp", "nats_url": nats_server.url, "agents": {}})
        )
        code, out = await apex(
            "canary", "set-weight", "btc-perp", "15", "--local", "--data-dir", str(data_dir)
        )
        assert code == 0, out
        kv = await KV.open(nc.jetstream(), "apex-btc-perp")
        assert await kv.get_json("canary.request") == {"action": "set-weight", "weight": 15}
        code, out = await apex("canary", "abort", "btc-perp", "--local", "--data-dir", str(data_dir))
        assert code == 0, out
        assert await kv.get_json("canary.request") == {"action": "abort"}
        code, out = await apex("canary", "pause", "btc-perp", "--local", "--data-dir", str(tmp_path / "none"))
        assert code == 1 and "runtime.json not found" in out
    finally:
        await nc.close()


async def test_operator_command_rejects_conflicting_scope() -> None:
    code, out = await apex("operator", "--namespace", "a", "--all-namespaces")
    assert code == 2 and "not both" in out
    code, out = await apex("operator", "--help")
    assert code == 0 and "apex operator --namespace trading" in out
