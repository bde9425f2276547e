"""A local TLS server answering as `fapi.binance.com`: ccxt keeps the exchange's real URLs (its
Binance error map is chosen by URL prefix) and reaches the server through a resolver and a CA given
in the aiohttp session it is configured with. ccxt itself is not modified or patched."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from tests.fixtures.pki import cert_pem, certificate, key_pem, new_key

from .fake_binance import FakeBinance

HOST = "fapi.binance.com"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    key = new_key()
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert_pem(certificate(HOST, key, dns=[HOST])))
    (d / "key.pem").write_bytes(key_pem(key))
    yield d / "cert.pem", d / "key.pem"


class LocalResolver(AbstractResolver):
    """Resolves the exchange's host name to the local server (and its port); nothing else."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        if host != HOST:
            raise OSError(f"no route to {host} in tests")
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


@dataclass
class Served:
    fake: FakeBinance
    port: int
    cafile: Path
    sessions: list[aiohttp.ClientSession]

    def session(self) -> aiohttp.ClientSession:
        """A client session that reaches the fake as the real host (closed by the fixture)."""
        ctx = ssl.create_default_context(cafile=str(self.cafile))
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, resolver=LocalResolver(self.port)))
        self.sessions.append(s)
        return s


@pytest.fixture
async def fake_binance(tls_files: tuple[Path, Path]) -> AsyncIterator[Served]:
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    fake = FakeBinance()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        served = Served(fake, port, cert, [])
        yield served
    finally:
        for s in served.sessions:
            await s.close()
        await runner.cleanup()
