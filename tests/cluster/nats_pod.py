"""Play the managed bus's pod: a real nats-server with the config the operator rendered.

Only what a pod gets from its environment changes — the listen ports (loopback, free), the store
directory (the PVC) and the server name (`$POD_NAME`); everything else, `max_file_store`, the
`include "auth.conf"` and the users in it, is run exactly as rendered.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from apextrader.local.nats_server import free_port
from tests.platform.conftest import require_tool


def local_nats_conf(rendered: str, store_dir: Path, port: int, http_port: int) -> str:
    """The rendered nats.conf with a pod's environment replaced by this machine's."""
    replacements = [
        (r"(?m)^port: \d+$", f'listen: "127.0.0.1:{port}"'),
        (r"(?m)^http_port: \d+$", f'http: "127.0.0.1:{http_port}"'),
        (r"(?m)^server_name: \$POD_NAME$", "server_name: apex-test-0"),
        (r"(?m)^(\s*)store_dir: \S+$", rf'\g<1>store_dir: "{store_dir}"'),
    ]
    text = rendered
    for pattern, repl in replacements:
        text, n = re.subn(pattern, repl, text)
        assert n == 1, f"the rendered nats.conf has no line matching {pattern!r}:\n{rendered}"
    return text


@contextlib.contextmanager
def nats_pod(
    directory: Path, nats_conf: str, auth_conf: str | None, port: int | None = None
) -> Iterator[str]:
    """Run nats-server as the StatefulSet's pod would; yield its client URL."""
    directory.mkdir(parents=True, exist_ok=True)
    port, http_port = port or free_port(), free_port()
    (directory / "nats.conf").write_text(local_nats_conf(nats_conf, directory / "js", port, http_port))
    if auth_conf is not None:
        (directory / "auth.conf").write_text(auth_conf)
    log = (directory / "nats.log").open("w")
    proc = subprocess.Popen(
        [require_tool("nats-server"), "-c", str(directory / "nats.conf")], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 15
        while "Server is ready" not in (directory / "nats.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start:\n{(directory / 'nats.log').read_text()}")
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
