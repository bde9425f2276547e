"""Giving memory back to the system after a burst (glibc keeps freed heap pages otherwise)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)


def trim() -> bool:
    """Collect garbage and return the heap's free pages to the system (`malloc_trim`); False where
    the C library has no `malloc_trim` (not glibc)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.malloc_trim(0))  # 1 when memory was released
    except (OSError, AttributeError, TypeError):
        log.debug("malloc_trim is not available here")
        return False
