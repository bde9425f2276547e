"""Per-agent NATS users, wired by the operator (kopf against kmock, real nats-server).

The operator creates the pipeline key once, renders the users into the managed server's auth file
and each agent's credentials into its own Secret, points every Deployment at that Secret, and logs
in to the bus as its own user. Here a real nats-server runs with the auth file the operator put in
kmock, so a wrong password, a missing include or a user that lacks a right the operator uses fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from apextrader.bus.kv import KV
from apextrader.bus.topology import KV_CANARY_WEIGHT
from apextrader.contracts.names import AGENT_IDS, agent_tracks
from apextrader.local.nats_server import free_port
from apextrader_operator.builders.security import (
    OPERATOR_USER,
    agent_nats_secret_name,
    secret_values,
    user_password,
)
from apextrader_operator.kube import KubeClient
from apextrader_operator.natsbus import BusPool
from apextrader_operator.reconcile import PipelineMemory, reconcile
from tests.fixtures.tools import require_tool
from tests.operator.harness import NAMESPACE, eventually, kmock_config, kube_api, mark_ready, running_operator
from tests.operator.test_operator_kopf import NAME, Env, env, example_cr, start  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(90)
KEY_SECRET = f"{NAME}-nats-key"
AUTH_SECRET = f"{NAME}-nats-auth"
CREDENTIALS = ("APEX_NATS_USER", "APEX_NATS_PASSWORD", "APEX_NATS_URL")


async def secret(kube: KubeClient, name: str) -> dict[str, Any] | None:
    return await kube.get("Secret", NAMESPACE, name)


async def pipeline_key(kube: KubeClient) -> bytes:
    obj = await secret(kube, KEY_SECRET)
    assert obj is not None
    return base64.b64decode(obj["data"]["key"])


@contextlib.contextmanager
def secured_nats(tmp: Path, port: int, auth_conf: str) -> Iterator[str]:
    """nats-server with the operator's auth file beside its config, as the projected volume has it."""
    (tmp / "auth.conf").write_text(auth_conf)
    (tmp / "nats.conf").write_text(
        f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{tmp / "js"}" }}\ninclude "auth.conf"\n'
    )
    log = (tmp / "nats.log").open("w")
    proc = subprocess.Popen(
        [require_tool("nats-server"), "-c", str(tmp / "nats.conf")], stdout=log, stderr=log
    )
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def kv_value(url: str, user: str, password: str, key: str) -> Any:
    nc = await nats.connect(url, user=user, password=password, allow_reconnect=False, connect_timeout=2)
    try:
        return await (await KV.open(nc.jetstream(), f"apex-{NAME}")).get_json(key)
    finally:
        await nc.close()


def _env_refs(deployment: dict[str, Any]) -> dict[str, dict[str, str]]:
    variables = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in variables
        if "secretKeyRef" in e.get("valueFrom", {})
    }


async def test_operator_runs_the_bus_with_users_and_agents_get_their_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    async with kube_api(tmp_path) as (_emulator, kube):
        config = kmock_config(
            image="apextrader:test", nats_url=f"nats://127.0.0.1:{port}", metrics_urls=lambda tp: []
        )
        async with running_operator(config):
            await kube.create(example_cr())
            auth = await eventually(lambda: secret(kube, AUTH_SECRET), what="the NATS auth Secret")
            await eventually(lambda: _names(kube, "StatefulSet"), what="the NATS StatefulSet")
            with secured_nats(tmp_path, port, secret_values(auth)["auth.conf"]) as url:
                await mark_ready(kube, "StatefulSet", f"{NAME}-nats")
                await eventually(
                    lambda: _has(kube, "Deployment", f"{NAME}-execution-canary"), within=20, what="agents"
                )
                key = await pipeline_key(kube)
                assert len(key) == 32
                # the operator logged in as its own user: it provisioned and wrote the weight
                operator = user_password(key, NAME, OPERATOR_USER)
                weight = await eventually(
                    lambda: kv_value(url, OPERATOR_USER, operator, KV_CANARY_WEIGHT), what="KV weight"
                )
                assert weight == 5

                key_obj = await secret(kube, KEY_SECRET)
                assert key_obj is not None
                cr = await kube.get("TradingPipeline", NAMESPACE, NAME)
                assert cr is not None
                assert [r["uid"] for r in key_obj["metadata"]["ownerReferences"]] == [cr["metadata"]["uid"]]

                passwords = {operator}
                deployments = await kube.list("Deployment", NAMESPACE)
                assert len(deployments) == 10
                for dep in deployments:
                    name = dep["metadata"]["name"]
                    refs = _env_refs(dep)
                    assert set(refs) == {"APEX_NATS_USER", "APEX_NATS_PASSWORD"}, name
                    held = await secret(kube, refs["APEX_NATS_USER"]["name"])
                    assert held is not None and refs["APEX_NATS_USER"]["name"] == f"{name}-nats"
                    values = secret_values(held)
                    assert set(values) == set(CREDENTIALS)
                    assert all(r["key"] in values for r in refs.values())
                    passwords.add(values["APEX_NATS_PASSWORD"])
                    # what the pod gets from the Secret logs in to the real server
                    nc = await nats.connect(
                        url,
                        user=values["APEX_NATS_USER"],
                        password=values["APEX_NATS_PASSWORD"],
                        allow_reconnect=False,
                        connect_timeout=2,
                    )
                    await nc.close()
                    plain = {
                        e["name"]: e.get("value")
                        for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
                    }
                    assert plain["APEX_NATS_URL"] == f"nats://{NAME}-nats.{NAMESPACE}.svc:4222"
                assert len(passwords) == 11  # 10 agent users and the operator, all different
                with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
                    await nats.connect(
                        url, user=f"{NAME}-execution-stable", password="guess", allow_reconnect=False
                    )

                # secrets never reach the status, the events or the logs
                status = json.dumps((await kube.get("TradingPipeline", NAMESPACE, NAME) or {}).get("status"))
                events = json.dumps(await kube.list("Event", NAMESPACE))
                needles = [*passwords, key.hex(), base64.b64encode(key).decode()]
                for needle in needles:
                    assert needle not in status and needle not in events and needle not in caplog.text
                # ... nor a Secret's last-applied annotation (only a digest is kept there)
                for obj in (await _secrets(kube)).values():
                    annotation = (obj["metadata"].get("annotations") or {}).get("apextrader.io/last-applied")
                    assert annotation is None or annotation.startswith("sha256:"), obj["metadata"]["name"]


async def _names(kube: KubeClient, kind: str) -> set[str]:
    return {o["metadata"]["name"] for o in await kube.list(kind, NAMESPACE)}


async def _has(kube: KubeClient, kind: str, name: str) -> bool:
    return name in await _names(kube, kind)


def secret_names() -> list[str]:
    """Every Secret the operator makes for the demo (read by name: nobody may list Secrets)."""
    agents = [
        agent_nats_secret_name(NAME, agent, track)
        for agent in AGENT_IDS
        for track in agent_tracks(agent, has_canary=True)
    ]
    return [KEY_SECRET, AUTH_SECRET, *agents]


async def _secrets(kube: KubeClient) -> dict[str, dict[str, Any]]:
    found = {name: await secret(kube, name) for name in secret_names()}
    return {name: obj for name, obj in found.items() if obj is not None}


async def test_key_survives_spec_edits_and_a_second_reconcile_writes_nothing(env: Env) -> None:  # noqa: F811
    await start(env, example_cr())
    before = await _secrets(env.kube)
    assert len(before) == 1 + 1 + 10  # key, auth, one per agent and track
    key_before = before[KEY_SECRET]
    # a spec edit that re-renders every agent's config: the key and every credential stay
    await env.patch_spec({"risk": {"maxLeverage": 2}, "agents": {"strategy-builder": {"replicas": 2}}})

    async def observed() -> bool:
        return (await env.status()).get("observedGeneration") == 2

    await eventually(observed, what="the edit reconciled")
    after = await _secrets(env.kube)
    assert after[KEY_SECRET]["metadata"]["resourceVersion"] == key_before["metadata"]["resourceVersion"]
    assert {n: o["data"] for n, o in after.items()} == {n: o["data"] for n, o in before.items()}

    # a fresh operator (new memory, new connections) reading the same key renders the same
    # Secrets and writes nothing at all
    await env.mark_all_ready()
    body = await env.cr()
    pool = BusPool()
    try:
        config = kmock_config(image="apextrader:test", nats_url=env.nats.url)
        outcome = await reconcile(body, kube=env.kube, pool=pool, memory=PipelineMemory(), config=config)
    finally:
        await pool.close()
    assert [c for c in outcome.changes if "Secret" in c] == []
    assert outcome.changes == []
    assert {n: o["data"] for n, o in (await _secrets(env.kube)).items()} == {
        n: o["data"] for n, o in after.items()
    }


async def test_an_unusable_key_secret_stops_the_reconcile_without_saying_what_it_holds(env: Env) -> None:  # noqa: F811
    junk = base64.b64encode(b"short").decode()
    cr = example_cr()
    cr["metadata"]["uid"] = "4f1e0c6a-0000-4000-8000-000000000001"  # kept by the emulator
    owner = {
        "apiVersion": cr["apiVersion"],
        "kind": "TradingPipeline",
        "name": NAME,
        "uid": cr["metadata"]["uid"],
    }
    await env.kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            # the pipeline's own key Secret (its label and owner), spoilt: not a foreign object
            "metadata": {
                "name": KEY_SECRET,
                "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "apextrader-operator"},
                "ownerReferences": [owner],
            },
            "data": {"key": junk},
        }
    )
    await env.kube.create(cr)

    async def refused() -> dict[str, Any] | None:
        conds = {c["type"]: c for c in (await env.status()).get("conditions", [])}
        bus = conds.get("BusReady")
        return bus if bus and bus["reason"] == "PipelineKeyInvalid" else None

    bus = await eventually(refused, what="BusReady=False PipelineKeyInvalid")
    assert bus["status"] == "False" and KEY_SECRET in bus["message"] and junk not in bus["message"]
    assert await env.names("StatefulSet") == set() and await env.names("Deployment") == set()
    # the operator never rewrites a key it did not make sense of
    held = await env.kube.get("Secret", NAMESPACE, KEY_SECRET)
    assert held is not None and held["data"] == {"key": junk}
