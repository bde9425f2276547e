"""Process settings from the environment (prefix `APEX_`), frozen and read once per process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apextrader.contracts.names import AgentId, Track


def default_instance() -> str:
    """The pod name on Kubernetes (HOSTNAME), else host-pid."""
    return os.environ.get("HOSTNAME") or f"{socket.gethostname()}-{os.getpid()}"


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APEX_", frozen=True, extra="ignore")

    agent: AgentId
    track: Track = "shared"
    pipeline_file: Path = Path("manifests/pipeline.yaml")
    nats_url: str = "nats://127.0.0.1:4222"
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_host: str = "0.0.0.0"
    log_level: str = "INFO"
    instance: str = Field(default_factory=default_instance)
    #: Create the pipeline's streams/consumers/KV if missing (idempotent); the operator or `apex up`
    #: normally does it, so a lone `apex agent` works too.
    ensure_topology: bool = True
    #: Messages fetched per pull request.
    fetch_batch: int = Field(default=64, ge=1, le=1000)
    #: Seconds to finish in-flight work on SIGTERM before giving up.
    stop_timeout: float = Field(default=20.0, gt=0)
    #: Largest event body accepted; bigger ones are dead-lettered as `oversized`.
    max_event_bytes: int = Field(default=256 * 1024, ge=1024)
    #: OTLP/HTTP collector base URL; OpenTelemetry's own OTEL_EXPORTER_OTLP_ENDPOINT is honoured.
    otlp_endpoint: str | None = Field(
        default_factory=lambda: os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    )
