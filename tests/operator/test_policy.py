"""The image allow-list: Docker's reference normalisation, prefixes at path boundaries, digests."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from apextrader.contracts import TradingPipeline, parse_pipeline
from apextrader_operator.builders.agents import DEFAULT_IMAGE
from apextrader_operator.kube import Credentials, KubeClient
from apextrader_operator.policy import (
    CREDENTIALS_LABEL,
    ImageRef,
    credentials_violations,
    image_allowed,
    parse_image,
)
from apextrader_operator.settings import OperatorConfig

DIGEST = "sha256:" + "0" * 64


def test_parse_normalises_like_docker() -> None:
    assert parse_image("nats:2.10-alpine") == ImageRef("docker.io/library/nats", "2.10-alpine")
    assert parse_image("docker.io/nats") == ImageRef("docker.io/library/nats")
    assert parse_image("localhost:5000/a/b:1") == ImageRef("localhost:5000/a/b", "1")
    assert parse_image(f"ghcr.io/o/r:1@{DIGEST}") == ImageRef("ghcr.io/o/r", "1", DIGEST)


@pytest.mark.parametrize(
    ("ref", "allowed"),
    [
        ("ghcr.io/apextrader/apextrader:0.2.0", True),
        (f"ghcr.io/apextrader/apextrader@{DIGEST}", True),
        ("ghcr.io/apextrader/apextrader-evil:1", False),  # a prefix only at a path boundary
        ("ghcr.io/apextrader/apextrader/sub:1", True),
        ("nats:2.10-alpine", True),
        ("docker.io/library/nats:2.10-alpine", True),
        ("nats:latest", False),  # the entry pins a tag
        (f"nats@{DIGEST}", True),  # a digest of an allowed repository is always allowed
        ("nats@md5:abc", False),
        ("evil.example/nats:2.10-alpine", False),
        ("registry.example/team/anything:1", True),
        ("registry.example/teammate/x:1", False),
    ],
)
def test_allow_list(ref: str, allowed: bool) -> None:
    entries = ("ghcr.io/apextrader/apextrader", "nats:2.10-alpine", "registry.example/team/")
    assert image_allowed(ref, entries) is allowed


def test_settings_from_the_environment() -> None:
    config = OperatorConfig.from_env({"APEX_AGENT_IMAGE": "registry.example/apex/apextrader:1.0"})
    assert config.allowed_images == ("registry.example/apex/apextrader", "nats")
    assert image_allowed("registry.example/apex/apextrader:2.0", config.allowed_images)
    assert image_allowed("nats:2.11", config.allowed_images)
    config = OperatorConfig.from_env(
        {"APEX_ALLOWED_IMAGES": " a.example/x , b.example/ ,", "APEX_NAMESPACE": "ops"}
    )
    assert config.allowed_images == ("a.example/x", "b.example/")
    assert config.network.operator_namespace == "ops" and config.network.monitoring_namespace is None


def test_every_setting_is_read_once_into_a_frozen_config() -> None:
    config = OperatorConfig.from_env(
        {
            "APEX_OPERATOR_INTERVAL": "0.5",
            "APEX_SERVER_SIDE_APPLY": "false",
            "APEX_OPERATOR_NATS_URL": "nats://x:1",
        }
    )
    assert (config.interval_s, config.converge_delay_s) == (0.5, 0.5)
    assert config.server_side_apply is False and config.nats_url == "nats://x:1"
    assert config.image == DEFAULT_IMAGE  # no APEX_AGENT_IMAGE: this release's image
    defaults = OperatorConfig.from_env({})
    assert (defaults.interval_s, defaults.converge_delay_s, defaults.server_side_apply) == (5.0, 2.0, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.image = "other"  # type: ignore[misc]


class _Recording(KubeClient):
    def __init__(self) -> None:
        super().__init__(Credentials(server="http://127.0.0.1:9"))
        self.gets: list[tuple[str, str, bool]] = []

    async def get(
        self, kind: str, namespace: str | None, name: str, *, metadata_only: bool = False
    ) -> dict[str, Any] | None:
        self.gets.append((kind, name, metadata_only))
        return {"metadata": {"name": name, "labels": {CREDENTIALS_LABEL: "true"}}}

    async def list(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        raise AssertionError("Secrets are never listed")


async def test_credentials_are_checked_by_name_for_metadata_only(example_pipeline: TradingPipeline) -> None:
    doc = example_pipeline.model_dump(by_alias=True, exclude_none=True, mode="json")
    doc["spec"].update(mode="live", execution={"credentialsSecret": "keys"})
    kube = _Recording()
    try:
        assert await credentials_violations(kube, parse_pipeline(doc)) == []
        assert kube.gets == [("Secret", "keys", True)]  # the canary track names the same Secret
        doc["spec"]["mode"] = "paper"
        kube.gets.clear()
        assert await credentials_violations(kube, parse_pipeline(doc)) == [] and kube.gets == []
    finally:
        await kube.close()
