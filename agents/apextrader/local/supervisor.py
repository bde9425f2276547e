"""Runs every agent as an `apex agent ID --track T` subprocess, in pipeline
order, each waited for on `/ready` before the next starts; a crashed agent is restarted with back-off
and its outage recorded; on stop, agents get SIGTERM in reverse order (then SIGKILL after a grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from apextrader.bus.topology import process_key
from apextrader.contracts.names import AgentId, Track
from apextrader.local.agent_env import agent_env
from apextrader.local.nats_server import free_port


@dataclass
class Outage:
    """A span during which an agent process was not running (crash → ready again)."""

    key: str
    started: float
    ended: float | None = None
    exit_code: int | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class AgentProcess:
    agent: AgentId
    track: Track
    http_port: int
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    ready: bool = False
    outages: list[Outage] = field(default_factory=list)

    @property
    def key(self) -> str:
        return process_key(self.agent, self.track)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class AgentStartError(RuntimeError):
    pass


class Supervisor:
    """Starts, watches and stops the agent processes of one pipeline."""

    def __init__(
        self,
        units: Sequence[tuple[AgentId, Track]],
        *,
        pipeline_file: Path,
        nats_url: str,
        log_dir: Path,
        ready_timeout: float = 60.0,
        stop_grace: float = 10.0,
        max_backoff: float = 8.0,
        extra_env: dict[str, str] | None = None,
        agent_env: Callable[[AgentId, Track], dict[str, str]] | None = None,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.processes = [
            AgentProcess(
                agent=a, track=t, http_port=free_port(), log_path=log_dir / f"{process_key(a, t)}.log"
            )
            for a, t in units
        ]
        self.pipeline_file = pipeline_file
        self.nats_url = nats_url
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.max_backoff = max_backoff
        self.extra_env = extra_env or {}
        #: Per agent and track (its own NATS user): added after `extra_env`.
        self.agent_env = agent_env or (lambda agent, track: {})
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    def by_key(self, key: str) -> AgentProcess:
        return next(p for p in self.processes if p.key == key)

    async def start(self) -> None:
        """Start every agent in order, each ready before the next; then watch them."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        for ap in self.processes:
            await self._spawn(ap)
            await self._wait_ready(ap)
        self._watchers = [
            asyncio.create_task(self._watch(ap), name=f"watch-{ap.key}") for ap in self.processes
        ]

    async def _spawn(self, ap: AgentProcess) -> None:
        env = {
            **agent_env(os.environ, ap.agent),
            **self.extra_env,
            **self.agent_env(ap.agent, ap.track),
            "APEX_HTTP_PORT": str(ap.http_port),
            "APEX_NATS_URL": self.nats_url,
            "APEX_PIPELINE_FILE": str(self.pipeline_file),
            "APEX_AGENT": ap.agent,
            "APEX_TRACK": ap.track,
            "APEX_HTTP_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [sys.executable, "-m", "apextrader.cli", "agent", ap.agent, "--track", ap.track]
        log = ap.log_path.open("ab")
        try:
            ap.proc = await asyncio.create_subprocess_exec(
                *cmd, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        ap.ready = False

    async def _wait_ready(self, ap: AgentProcess) -> None:
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://127.0.0.1:{ap.http_port}/ready"
        assert self._http is not None
        while time.monotonic() < deadline:
            if ap.proc is None or ap.proc.returncode is not None:
                raise AgentStartError(f"{ap.key} exited during start-up (see {ap.log_path})")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._http.get(url) as resp:
                    if resp.status == 200:
                        ap.ready = True
                        return
            await asyncio.sleep(0.1)
        raise AgentStartError(f"{ap.key} not ready after {self.ready_timeout:.0f} s (see {ap.log_path})")

    async def _watch(self, ap: AgentProcess) -> None:
        backoff = 0.25
        while not self._stopping:
            assert ap.proc is not None
            code = await ap.proc.wait()
            if self._stopping:
                return
            outage = Outage(key=ap.key, started=time.time(), exit_code=code)
            ap.outages.append(outage)
            ap.ready = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            ap.restarts += 1
            await self._spawn(ap)
            try:
                await self._wait_ready(ap)
            except AgentStartError:
                continue  # it exited again: the loop records another outage and backs off
            outage.ended = time.time()
            backoff = 0.25

    async def stop(self) -> None:
        """SIGTERM in reverse order (downstream first), SIGKILL after the grace period."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for ap in reversed(self.processes):
            await self._terminate(ap)
        if self._http is not None:
            await self._http.close()

    async def stop_one(self, key: str) -> None:
        """Stop one agent for good (its watcher no longer restarts it): e.g. the scanner before a drain."""
        ap = self.by_key(key)
        index = self.processes.index(ap)
        if index < len(self._watchers):
            self._watchers[index].cancel()
        await self._terminate(ap)

    async def retire(self, key: str) -> None:
        """Stop one agent for good and forget it (e.g. the canary's after a promote): it is no longer
        watched, scraped, listed in runtime.json or counted in the run's summary."""
        await self.stop_one(key)
        index = self.processes.index(self.by_key(key))
        del self.processes[index]
        if index < len(self._watchers):
            del self._watchers[index]

    async def _terminate(self, ap: AgentProcess) -> None:
        proc = ap.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def kill(self, key: str) -> int:
        """kill -9 one agent (chaos); the watcher restarts it. Returns the killed pid."""
        ap = self.by_key(key)
        assert ap.proc is not None
        pid = ap.proc.pid
        os.kill(pid, signal.SIGKILL)
        return pid

    def runtime_info(self) -> dict[str, dict[str, int | None]]:
        return {ap.key: {"pid": ap.pid, "http_port": ap.http_port} for ap in self.processes}
