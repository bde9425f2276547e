"""External bus credentials come from `bus.credentialsSecret` (never from the URL): the agents' env
takes them by secretKeyRef, the operator reads them from the Secret (kmock), and a URL with
credentials is refused by the spec."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from apextrader.contracts import PipelineError, TradingPipeline, load_pipeline, parse_pipeline
from apextrader_operator.builders.agents import DEFAULT_IMAGE, build_deployment
from apextrader_operator.credentials import bus_login
from apextrader_operator.kube import KubeError
from tests.operator.harness import NAMESPACE, kube_api

REPO = Path(__file__).resolve().parents[2]


def _external(**bus: Any) -> TradingPipeline:
    raw = load_pipeline(REPO / "manifests" / "pipeline.yaml").model_dump(by_alias=True, mode="json")
    raw["metadata"]["namespace"] = NAMESPACE
    raw["spec"]["bus"] = {"url": "nats://nats.infra:4222", **bus}
    return parse_pipeline(raw, "test")


def test_agents_take_the_login_from_the_secret() -> None:
    tp = _external(credentialsSecret="nats-login")
    dep = build_deployment(tp, "execution", "stable", DEFAULT_IMAGE)
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["APEX_NATS_URL"]["value"] == "nats://nats.infra:4222"
    assert env["APEX_NATS_USER"]["valueFrom"]["secretKeyRef"] == {"name": "nats-login", "key": "user"}
    assert env["APEX_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "nats-login", "key": "password"}


def test_a_url_with_credentials_is_refused() -> None:
    with pytest.raises(PipelineError, match="credentialsSecret"):
        _external(url="nats://apex:secret@nats.infra:4222")


async def test_the_operator_logs_in_with_the_secret(tmp_path: Path) -> None:
    tp = _external(credentialsSecret="nats-login")
    async with kube_api(tmp_path) as (_, kube):
        with pytest.raises(KubeError, match="nats-login"):
            await bus_login(kube, tp, None)
        data = {
            k: base64.b64encode(v.encode()).decode() for k, v in {"user": "apex", "password": "pw"}.items()
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "nats-login", "namespace": NAMESPACE},
        }
        await kube.create({**secret, "data": data})
        login = await bus_login(kube, tp, None)
    assert (login.url, login.user, login.password) == ("nats://nats.infra:4222", "apex", "pw")
    assert "pw" not in repr(login)
