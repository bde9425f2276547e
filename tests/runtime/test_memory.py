"""`runtime.memory.trim` gives freed heap back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from apextrader.runtime.memory import trim


def _rss_kib() -> int:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmRSS and glibc are Linux's")
def test_trim_returns_a_freed_burst_to_the_system() -> None:
    if not ctypes.util.find_library("c"):
        pytest.skip("no C library found to trim")
    # 1 KiB objects come from malloc (not Python's small-object arenas); keeping every 100th pins
    # the heap's top, so freeing the rest gives nothing back until the heap is trimmed.
    burst = [bytes(1024) + i.to_bytes(4, "little") for i in range(50_000)]
    pinned = burst[::100]
    del burst
    kept = _rss_kib()
    assert trim()
    assert _rss_kib() < kept - 20_000  # ~49 MB were free inside the heap
    assert len(pinned) == 500
