"""Process settings from the environment (prefix `APEX_`), frozen and read once per process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, SecretStr
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
    #: The agent's own NATS user (on Kubernetes from the `<deployment>-nats` Secret). Kept out of the
    #: URL, which connection messages log.
    nats_user: str | None = None
    nats_password: SecretStr | None = None
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
    #: Record where each handled message's time goes and write it here on stop (`bus.hops`).
    hop_profile: Path | None = None
    #: Largest event body accepted; bigger ones are dead-lettered as `oversized`.
    max_event_bytes: int = Field(default=256 * 1024, ge=1024)
    #: OTLP/HTTP collector base URL; OpenTelemetry's own OTEL_EXPORTER_OTLP_ENDPOINT is honoured.
    otlp_endpoint: str | None = Field(
        default_factory=lambda: os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    )
    #: The traces' service.name; OpenTelemetry's OTEL_SERVICE_NAME (the operator sets the
    #: Deployment's name) wins over the default `<agent>[-<track>]`.
    service_name: str | None = Field(default_factory=lambda: os.environ.get("OTEL_SERVICE_NAME") or None)

    def nats_options(self) -> dict[str, str]:
        """nats-py connect options for the credentials, if any."""
        if not self.nats_user:
            return {}
        password = self.nats_password.get_secret_value() if self.nats_password else ""
        return {"user": self.nats_user, "password": password}
