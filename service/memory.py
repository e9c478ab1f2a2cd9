"""Give freed heap memory back to the operating system after load peaks.

Under overload the service holds hundreds of requests at once (bodies, decoded images, queued
jobs). When the peak passes, glibc's allocator keeps the freed pages mapped, so resident memory
stays at the peak's level for the life of the process (measured: 217 MiB before a 10 × capacity
burst, 310 MiB after, whatever its length: a high-water mark, not a leak). ``malloc_trim(0)``
returns them. `trim_when_idle` calls it every ``period_s`` while the queue is empty; on a C library
without ``malloc_trim`` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("cmal.service")


def _malloc_trim() -> Callable[[], object] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


MALLOC_TRIM = _malloc_trim()


async def trim_when_idle(is_idle: Callable[[], bool], period_s: float = 30.0) -> None:
    """Run forever (cancel to stop): every ``period_s``, trim the heap if ``is_idle()``."""
    if MALLOC_TRIM is None:
        log.info("malloc_trim is not available: freed memory stays with the process")
        return
    while True:
        await asyncio.sleep(period_s)
        if is_idle():
            await asyncio.to_thread(MALLOC_TRIM)
