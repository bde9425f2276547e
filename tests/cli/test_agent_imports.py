"""What `apex agent ID` loads: each agent process imports only the libraries its hot path uses, so
a stray module-level import of a heavy library (polars, numba, ...) fails here rather than adding
tens of MB to every agent's RSS (docs/performance.md, "Memory"). Each agent is imported in a fresh
interpreter, as `apex up` and a container start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apextrader.cli.agents import AGENT_CLASSES, JIT_AGENTS

ROOT = Path(__file__).resolve().parents[2]

#: Batch, report and live-exchange libraries: no agent needs them on the default (synthetic, paper)
#: pipeline. ccxt is imported only for a `ccxt` source or a live venue.
NEVER: tuple[str, ...] = ("polars", "pyarrow", "pandas", "plotly", "ccxt", "scipy.stats")
#: The compiler: only the agents in JIT_AGENTS load it.
JIT: tuple[str, ...] = ("numba", "llvmlite")

# What `apex agent ID` runs before the agent starts: the CLI, the agent's class, the runtime.
_CHILD = """
import json, sys
from apextrader.cli.main import app
from apextrader.cli.agents import load_agent_class
load_agent_class(sys.argv[1])
from apextrader.runtime import run_agent
print(json.dumps(sorted(sys.modules)))
"""


def _modules(agent_id: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "APEX_JIT"}  # as `apex agent` picks it
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "agents"), str(ROOT / "operator"), str(ROOT)])
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, agent_id], env=env, cwd=ROOT, check=True, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("agent_id", sorted(AGENT_CLASSES))
def test_agent_imports_only_what_it_uses(agent_id: str) -> None:
    loaded = _modules(agent_id)
    forbidden = NEVER if agent_id in JIT_AGENTS else NEVER + JIT
    assert not loaded & set(forbidden), f"{agent_id} imports {sorted(loaded & set(forbidden))}"
    if agent_id in JIT_AGENTS:
        assert "numba" in loaded  # the one agent that compiles really does
