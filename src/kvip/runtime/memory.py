"""Handing freed heap memory back to the operating system (glibc's `malloc_trim`, docs/decisions.md D21).

The first sync decodes, converts and drops 40,000 objects page by page; glibc keeps some of what they used
mapped although it is free. `malloc_trim(0)` returns the heap's free pages to the kernel: it changes no
Python object, only the resident set (3 MiB of 148 at 10,000 Services / 30,000 EndpointSlices, measured).
Memory held by Python's own small-object allocator is not glibc's to return. Where the C library is not
glibc (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import time
from collections.abc import Callable

log = logging.getLogger("kvip.memory")


def _glibc_trim() -> Callable[[int], int] | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's soname on every Linux (find_library would run ldconfig)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _glibc_trim()


def release_free_memory() -> bool:
    """Return the heap's free pages to the kernel; False where there is no glibc to ask."""
    if _TRIM is None:
        return False
    started = time.perf_counter()
    _TRIM(0)
    log.debug("returned free heap memory to the kernel in %.1f ms", (time.perf_counter() - started) * 1e3)
    return True
