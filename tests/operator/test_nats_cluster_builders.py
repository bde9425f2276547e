"""The managed bus with 3 replicas (spread, disruption budget, JetStream readiness, one pod at a time)
and with TLS: the nats.conf the operator renders, run by a real nats-server with certificates from a
CA this test makes; a client that trusts the CA gets in, a plaintext one does not."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any

import nats
import pytest

from apextrader.contracts import TradingPipeline, load_pipeline
from apextrader.local.nats_server import free_port, nats_server_binary
from apextrader_operator.builders.nats import TLS_DIR, build_bus, build_nats_config, nats_url
from tests.fixtures.pki import cert_pem, certificate, key_pem, new_key

REPO = Path(__file__).resolve().parents[2]


def _pipeline(**managed: Any) -> TradingPipeline:
    tp = load_pipeline(REPO / "manifests" / "pipeline.yaml")
    raw = tp.model_dump(by_alias=True, mode="json")
    raw["spec"]["bus"] = {"managed": {**(raw["spec"]["bus"].get("managed") or {}), **managed}}
    return TradingPipeline.model_validate(raw)


def _kinds(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objs}


def test_three_replicas_spread_budget_readiness_and_rolling() -> None:
    objs = _kinds(build_bus(_pipeline(replicas=3), "authorization {}"))
    pdb = objs["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1
    sts = objs["StatefulSet"]["spec"]
    assert pdb["selector"] == sts["selector"]
    pod = sts["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["topologySpreadConstraints"][0]["labelSelector"] == sts["selector"]
    assert sts["updateStrategy"]["type"] == "RollingUpdate"
    ready = pod["containers"][0]["readinessProbe"]["httpGet"]
    assert ready["path"] == "/healthz?js-enabled-only=true"
    one = _kinds(build_bus(_pipeline(replicas=1)))
    assert "PodDisruptionBudget" not in one
    assert "affinity" not in one["StatefulSet"]["spec"]["template"]["spec"]


def _write_tls(d: Path) -> None:
    """ca.crt, tls.crt, tls.key as a cert-manager Secret holds them."""
    ca_key, key = new_key(), new_key()
    ca = certificate("apex-test-ca", ca_key)
    leaf = certificate(
        "localhost", key, issuer=ca, issuer_key=ca_key, ca=False, dns=["localhost"], ips=["127.0.0.1"]
    )
    d.mkdir(parents=True)
    (d / "ca.crt").write_bytes(cert_pem(ca))
    (d / "tls.crt").write_bytes(cert_pem(leaf))
    (d / "tls.key").write_bytes(key_pem(key))


def _serve(tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / "nats.log").open("w")
    env = {**os.environ, "POD_NAME": "btc-perp-nats-0"}
    conf = str(tmp_path / "nats.conf")
    return subprocess.Popen([nats_server_binary(), "-c", conf], stdout=log, stderr=log, env=env)


async def test_managed_tls_with_a_ca_the_test_generates(tmp_path: Path) -> None:
    tp = _pipeline(tls={"secretName": "btc-perp-nats-tls"})
    assert nats_url(tp).startswith("tls://")
    sts = _kinds(build_bus(tp))["StatefulSet"]["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "btc-perp-nats-tls"}} in sts["volumes"]
    bus = tp.spec.bus.managed
    assert bus is not None
    conf = build_nats_config(tp, bus)["data"]["nats.conf"]
    port, tls_dir = free_port(), tmp_path / "tls"
    _write_tls(tls_dir)
    conf = conf.replace(TLS_DIR, str(tls_dir)).replace("/data/jetstream", str(tmp_path / "js"))
    conf = conf.replace("port: 4222", f"port: {port}").replace("http_port: 8222", f"http_port: {free_port()}")
    (tmp_path / "nats.conf").write_text(conf)
    proc = _serve(tmp_path)
    try:
        ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
        nc = None
        for _ in range(50):
            try:
                nc = await nats.connect(
                    f"tls://127.0.0.1:{port}", tls=ctx, allow_reconnect=False, connect_timeout=1
                )
                break
            except Exception:  # not listening yet
                await asyncio.sleep(0.1)
        assert nc is not None and nc.is_connected
        await nc.close()
        with pytest.raises(Exception):  # noqa: B017  (nats-py raises several types for a refused handshake)
            await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False, connect_timeout=1)
        untrusting = ssl.create_default_context()
        with pytest.raises(Exception):  # noqa: B017
            await nats.connect(
                f"tls://127.0.0.1:{port}", tls=untrusting, allow_reconnect=False, connect_timeout=1
            )
    finally:
        proc.terminate()
        proc.wait(10)
