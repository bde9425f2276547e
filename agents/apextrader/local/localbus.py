"""The bus of `apex up`: one nats-server or a 3-server cluster on loopback, with the same per-agent
users as the cluster (`bus.users`), a watchdog that restarts a dead server with back-off, and the
supervisor's own login in a 0600 file that `apex dlq` and `apex canary --local` read
(runtime.json `nats_admin`)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apextrader.bus.users import OPERATOR_USER, nats_authorization, nats_user_name, user_password
from apextrader.contracts.names import AgentId, Track
from apextrader.contracts.pipeline import TradingPipeline
from apextrader.local.nats_server import LocalCluster

ADMIN_FILE = "nats-admin.json"
#: A file of this name in a server's store dir holds it down (maintenance, chaos tests): the
#: watchdog does not restart it until the file is gone.
HOLD_FILE = "hold"


@dataclass(frozen=True)
class LocalLogins:
    """Passwords for this run only: a fresh key each `apex up`."""

    pipeline: str
    key: bytes

    def agent_env(self, agent: AgentId, track: Track) -> dict[str, str]:
        user = nats_user_name(agent, track)
        return {
            "APEX_NATS_USER": user,
            "APEX_NATS_PASSWORD": user_password(self.key, self.pipeline, user),
            # the supervisor created everything; an agent's user may not create streams
            "APEX_ENSURE_TOPOLOGY": "false",
        }

    def admin_options(self) -> dict[str, str]:
        return {"user": OPERATOR_USER, "password": user_password(self.key, self.pipeline, OPERATOR_USER)}

    def write_admin(self, data_dir: Path) -> Path:
        path = data_dir / ADMIN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.admin_options(), f)
        os.chmod(path, 0o600)  # an existing file keeps its mode on O_CREAT
        return path


def start_local_bus(tp: TradingPipeline, data_dir: Path, replicas: int) -> tuple[LocalCluster, LocalLogins]:
    logins = LocalLogins(tp.name, secrets.token_bytes(32))
    cluster = LocalCluster(
        data_dir / "jetstream", replicas, name=f"apex-{tp.name}", auth_conf=nats_authorization(tp, logins.key)
    )
    return cluster.start(), logins


def admin_login(runtime: dict[str, Any]) -> dict[str, str]:
    """nats-py options from runtime.json's `nats_admin` file (none when the bus has no users)."""
    path = runtime.get("nats_admin")
    if not path:
        return {}
    raw = json.loads(Path(path).read_text())
    return {"user": str(raw["user"]), "password": str(raw["password"])}


def find_admin_login(url: str, root: Path = Path(".apex")) -> dict[str, str]:
    """The admin login of the running `apex up` whose bus serves `url` (`apex dlq --nats URL`)."""
    for runtime_file in sorted(root.glob("*/runtime.json")):
        try:
            runtime = json.loads(runtime_file.read_text())
        except (OSError, ValueError):
            continue
        if url in runtime.get("nats_urls", [runtime.get("nats_url")]):
            return admin_login(runtime)
    return {}


class ServerWatchdog:
    """Restarts a dead nats-server on its port and store, with back-off per server (0.25 s doubling
    to `max_backoff`, reset once it runs again); records the downtime."""

    def __init__(self, cluster: LocalCluster, max_backoff: float = 8.0) -> None:
        self.cluster = cluster
        self.max_backoff = max_backoff
        self.downtime_s = 0.0
        self.restarts = 0

    async def run(self) -> None:
        backoff = [0.25] * len(self.cluster.servers)
        while True:
            await asyncio.sleep(0.2)
            for i, server in enumerate(self.cluster.servers):
                if server.running or (server.store_dir / HOLD_FILE).exists():
                    continue
                down_at = time.monotonic()
                await asyncio.sleep(backoff[i])
                try:
                    await asyncio.to_thread(server.start)
                except RuntimeError:
                    backoff[i] = min(backoff[i] * 2, self.max_backoff)
                    continue
                backoff[i] = 0.25
                self.downtime_s += time.monotonic() - down_at + 0.2
                self.restarts += 1
