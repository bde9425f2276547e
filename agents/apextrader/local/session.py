"""The running parts of one `apex up`: the local bus (servers, per-agent users, streams, consumers,
KV), the canary driver, the agents' supervisor and `runtime.json`, opened and closed together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from rich.console import Console

from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.kv import KV
from apextrader.bus.topology import KV_HALT, Topology, declare
from apextrader.contracts import AGENT_IDS, agent_tracks
from apextrader.contracts.pipeline import TradingPipeline
from apextrader.local.canary_driver import LocalCanary, attach, serve_metrics
from apextrader.local.localbus import ServerWatchdog, start_local_bus
from apextrader.local.nats_server import LocalCluster
from apextrader.local.supervisor import Supervisor


@dataclass
class Session:
    """The running parts of one `apex up`: started by `open_session`, torn down together by `close`."""

    tp: TradingPipeline
    data_dir: Path
    bus: LocalCluster
    admin_file: Path
    nc: NATS
    js: JetStreamContext
    #: Replaced while running: a promote retires the canary's consumers.
    topology: Topology
    kv: KV
    canary: LocalCanary
    supervisor: Supervisor
    watchdog: ServerWatchdog
    metrics_port: int
    started: float
    background: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def has_canary(self) -> bool:
        return self.tp.spec.canary is not None

    @property
    def tracks(self) -> list[str]:
        return ["stable", "canary"] if self.has_canary else ["stable"]

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / "runtime.json"

    def write_runtime(self) -> None:
        """Where `apex canary --local` and the tests find the processes (pids change on restarts)."""
        info = {
            "pipeline": self.tp.name,
            "nats_url": self.bus.url,
            "nats_pid": self.bus.pids[0],
            "nats_urls": self.bus.urls,
            "nats_pids": self.bus.pids,
            "nats_store_dirs": [str(srv.store_dir) for srv in self.bus.servers],
            "nats_admin": str(self.admin_file),
            "agents": self.supervisor.runtime_info(),
            "supervisor": {"http_port": self.metrics_port},
        }
        partial = self.runtime_file.with_suffix(".json.tmp")  # readers never see a half-written file
        partial.write_text(json.dumps(info, indent=2))
        partial.replace(self.runtime_file)

    async def close(self) -> None:
        """Background tasks, agents, the connection, the servers and the run's files; safe after a failure."""
        for t in self.background:
            t.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)  # ended before the connection closes
        await self.supervisor.stop()
        with contextlib.suppress(Exception):
            await self.nc.close()
        self.bus.stop()
        self.runtime_file.unlink(missing_ok=True)
        self.admin_file.unlink(missing_ok=True)


async def open_session(tp: TradingPipeline, data_dir: Path, pipeline_file: Path, console: Console) -> Session:
    """The bus (servers, users, streams, consumers, KV), the canary and the (not yet started) agents."""
    spec = tp.spec
    bus, logins = await asyncio.to_thread(
        start_local_bus, tp, data_dir, spec.bus.managed.replicas if spec.bus.managed else 1
    )
    admin_file = logins.write_admin(data_dir)
    all_urls = ",".join(bus.urls)
    console.print(f"[green]✓[/] {len(bus.servers)} nats-server(s) with JetStream on {all_urls}")
    nc = await connect(all_urls, name="apex-up", **logins.admin_options())
    js = nc.jetstream()
    topology = declare(spec, tp.name)
    await ensure_topology(js, topology)
    kv = KV(await js.key_value(topology.kv_bucket))
    await kv.put_json(KV_HALT, False)
    canary = LocalCanary(kv=kv, spec=spec)
    await canary.tick()
    console.print(
        f"[green]✓[/] {len(topology.streams)} streams, {len(topology.consumers)} consumers, KV {topology.kv_bucket}"
    )
    units = [(a, t) for a in AGENT_IDS for t in agent_tracks(a, spec.canary is not None)]
    supervisor = Supervisor(
        units,
        pipeline_file=pipeline_file,
        nats_url=all_urls,
        log_dir=data_dir / "logs",
        agent_env=logins.agent_env,
    )
    attach(canary, supervisor, tp, js)
    metrics_port = serve_metrics()  # apex_canary_* of this supervisor
    return Session(
        tp=tp,
        data_dir=data_dir,
        bus=bus,
        admin_file=admin_file,
        nc=nc,
        js=js,
        topology=topology,
        kv=kv,
        canary=canary,
        supervisor=supervisor,
        watchdog=ServerWatchdog(bus),
        metrics_port=metrics_port,
        started=time.time(),
    )
