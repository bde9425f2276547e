"""`/health` (liveness), `/ready` (connected, consumers bound, agent ready) and `/metrics` on one port."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apextrader.bus.metrics import REGISTRY


class HealthServer:
    def __init__(
        self, host: str, port: int, *, alive: Callable[[], bool], ready: Callable[[], dict[str, bool]]
    ) -> None:
        self.host = host
        self.port = port
        self.alive = alive
        self.ready = ready
        self._runner: web.AppRunner | None = None

    async def _health(self, _: web.Request) -> web.Response:
        ok = self.alive()
        return web.json_response({"status": "ok" if ok else "dead"}, status=200 if ok else 503)

    async def _ready(self, _: web.Request) -> web.Response:
        checks = self.ready()
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        """Serve; returns the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
