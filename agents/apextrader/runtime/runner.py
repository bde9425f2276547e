"""Runs one agent: connect, (ensure and) bind its consumers, serve health/metrics, handle events until
SIGTERM, then stop fetching, finish the message in hand, ack, stop the agent and drain the connection.

Exit code 0 after a signal; 1 when a supervised task (`ctx.spawn`) or a consumer crashed, so the
supervisor (Kubernetes, `apex up`) restarts the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from nats.aio.client import Client as NatsClient

from apextrader.bus.advisories import watch_max_deliveries
from apextrader.bus.client import connect, ensure_topology
from apextrader.bus.consumer import PullConsumer
from apextrader.bus.hops import HopProfile
from apextrader.bus.kv import KV
from apextrader.bus.middleware import ChainConfig, CompletedIds, build_chain
from apextrader.bus.publisher import Publisher
from apextrader.bus.topology import ConsumerDecl, declare
from apextrader.bus.tracing import setup_tracing, tracer_from
from apextrader.contracts import TradingPipeline, load_pipeline, track_spec
from apextrader.contracts.names import EVENT_TYPES, EventType
from apextrader.runtime.agent import Agent
from apextrader.runtime.context import AgentContext
from apextrader.runtime.http import HealthServer
from apextrader.runtime.logging import setup_logging
from apextrader.runtime.memory import trim
from apextrader.runtime.settings import AgentSettings


def consumer_event_types(decl: ConsumerDecl, pipeline: str) -> set[EventType]:
    """The event types a consumer's filter subjects select (`apex.<p>.<type>.<track>`)."""
    prefix = f"apex.{pipeline}."
    found = {s.removeprefix(prefix).rsplit(".", 1)[0] for s in decl.filter_subjects}
    return {t for t in EVENT_TYPES if t in found}


class AgentRunner:
    def __init__(
        self,
        agent_cls: type[Agent],
        settings: AgentSettings,
        *,
        pipeline: TradingPipeline | None = None,
        configure_logging: bool = True,
    ) -> None:
        self.agent_cls = agent_cls
        self.settings = settings
        self.pipeline = pipeline or load_pipeline(settings.pipeline_file)
        self.configure_logging = configure_logging
        self.consumers: list[PullConsumer] = []
        self.agent: Agent | None = None
        self.nc: NatsClient | None = None
        self.http_port: int | None = None
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._crashed: BaseException | None = None
        self.log = logging.getLogger(f"apextrader.agent.{settings.agent}")

    # -- supervision -------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("supervised task crashed: %r", exc, exc_info=exc)
            self._crashed = exc
            self._stop.set()

    def request_stop(self) -> None:
        self._stop.set()

    def readiness(self) -> dict[str, bool]:
        return {
            "nats": bool(self.nc and self.nc.is_connected),
            "consumers": all(c.bound for c in self.consumers),
            "agent": bool(self.agent and self.agent.is_ready()),
        }

    # -- life cycle ----------------------------------------------------------------------------
    async def run(self) -> int:
        s = self.settings
        name = s.agent if s.track == "shared" else f"{s.agent}-{s.track}"
        log = self.log
        if self.configure_logging:
            log = self.log = setup_logging(
                s.log_level, agent=s.agent, track=s.track, instance=s.instance, pipeline=self.pipeline.name
            )
        # Health first: /health answers 200 and /ready 503 while NATS is still being reached.
        http = HealthServer(
            s.http_host, s.http_port, alive=lambda: self._crashed is None, ready=self.readiness
        )
        self.http_port = await http.start()
        try:
            return await self._run(name, log)
        finally:
            await http.stop()

    async def _run(self, name: str, log: logging.Logger) -> int:
        s = self.settings
        provider = setup_tracing(s.service_name or name, s.otlp_endpoint)
        tracer = tracer_from(provider)
        self.nc = nc = await connect(s.nats_url, name=f"{name}@{s.instance}", **s.nats_options())
        js = nc.jetstream()
        topology = declare(self.pipeline.spec, self.pipeline.name)
        if s.ensure_topology:
            await ensure_topology(js, topology)
        publisher = Publisher(js, tracer)
        ctx = AgentContext(
            pipeline=self.pipeline,
            spec=track_spec(self.pipeline.spec, s.track),
            track=s.track,
            instance=s.instance,
            settings=s,
            log=log,
            publisher=publisher,
            kv=await KV.open(js, topology.kv_bucket),
            _spawn=self.spawn,
        )
        self.agent = agent = self.agent_cls(ctx)
        handlers = dict(agent.subscriptions())
        decls = topology.consumers_for(s.agent, s.track)
        covered: set[EventType] = set()
        completed = CompletedIds()
        profile = HopProfile(s.agent, s.track) if s.hop_profile else None
        for decl in decls:
            types = consumer_event_types(decl, self.pipeline.name) & set(handlers)
            covered |= types
            cfg = ChainConfig(
                js=js,
                pipeline=self.pipeline.name,
                agent=s.agent,
                track=s.track,
                stream=decl.stream,
                max_deliver=decl.max_deliver,
                backoff_s=decl.backoff_s,
                handlers={t: handlers[t] for t in types},
                publisher=publisher,
                tracer=tracer,
                completed=completed,
                max_event_bytes=s.max_event_bytes,
                ack_wait_s=decl.ack_wait_s,
                profile=profile,
            )
            self.consumers.append(PullConsumer(js, decl, build_chain(cfg), batch=s.fetch_batch))
        missing = set(handlers) - covered
        if missing:
            raise RuntimeError(f"{s.agent} handles {sorted(missing)} but the topology gives it no consumer")
        for consumer in self.consumers:
            await consumer.bind()
            # Messages that crashed or hung this agent max_deliver times still reach the DLQ.
            await watch_max_deliveries(nc, self.pipeline.name, consumer.decl)

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self.request_stop)
        await agent.start()
        # Start-up objects (modules, spec, agent state) never die: keep them out of the collector's
        # scans, which otherwise show up as latency spikes on the hot path. The start-up's garbage
        # (history replayed, imports' temporaries) goes back to the system.
        trim()
        gc.freeze()
        consumer_tasks = [self.spawn(c.run()) for c in self.consumers]
        log.info(
            "started",
            extra={"http_port": self.http_port, "consumers": [c.decl.durable for c in self.consumers]},
        )
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            for consumer in self.consumers:
                consumer.stop()
            _done, pending = (
                await asyncio.wait(consumer_tasks, timeout=s.stop_timeout)
                if consumer_tasks
                else (set(), set())
            )
            for task in pending:
                task.cancel()
            try:
                await asyncio.wait_for(agent.stop(), s.stop_timeout)
            except Exception as exc:
                log.error("agent stop failed: %r", exc)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):  # already closed
                await nc.drain()
            if provider is not None:
                provider.shutdown()
            if profile is not None and s.hop_profile is not None:
                profile.dump(s.hop_profile)
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        if self._crashed is not None:
            return 1
        return 0


def run_agent(agent_cls: type[Agent], settings: AgentSettings) -> int:
    """Blocking entry point used by `apex agent`."""
    return asyncio.run(AgentRunner(agent_cls, settings).run())
