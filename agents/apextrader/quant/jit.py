"""`njit`: numba's compiler where a process crunches arrays, the plain Python function where it
steps one bar at a time and memory matters more.

Importing numba costs ~70 MB of RSS and loading compiled functions into LLVM about as much again,
so a live agent that updates indicators once per closed bar (12.5 µs/bar in plain Python against
4.7 µs compiled, `make bench`) would pay ~140 MB for speed it never uses. Every kernel is written
in the subset both run identically: float64 arithmetic in the same order gives the same bits, and
no kernel divides by zero (numba raises there, numpy would return inf).

The mode is read once, from `APEX_JIT` (default `1`), when this module is first imported; set it
before importing any quant kernel. `apex agent` sets `APEX_JIT=0` for the agents that do not
compile (`apextrader.cli.agents.JIT_AGENTS` lists those that do: none by default, the batch CLI
compiles), unless it is already set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

#: True when kernels are compiled with numba in this process.
ENABLED: Final = os.environ.get("APEX_JIT", "1").strip().lower() not in ("0", "false", "no", "off")


@overload
def njit(fn: F, /) -> F: ...
@overload
def njit(**options: Any) -> Callable[[F], F]: ...
def njit(fn: Any = None, /, **options: Any) -> Any:
    """`numba.njit(fn, **options)` when JIT is enabled, else `fn` unchanged."""
    if ENABLED:
        import numba  # only here: importing numba is the cost this module exists to avoid

        return numba.njit(fn, **options) if fn is not None else numba.njit(**options)
    return fn if fn is not None else _identity


def _identity(fn: F) -> F:
    return fn
