"""Explicit synchronisation for service tests: hold the inference worker, wait for a condition.

No test may depend on two requests happening to arrive together or on a sleep winning a race:
a `Gate` holds the worker inside a backend call until the test releases it, and `until` waits for
an observable state (queue depth, a counter) with a generous deadline that only a hang reaches.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

HANG = 60.0  # seconds: only a hung service takes this long


class Gate:
    """Wrap ``backend.<method>`` so the worker thread stops inside it until `open` is called."""

    def __init__(self, backend: Any, method: str = "fuse"):
        self.entered = threading.Event()
        self.released = threading.Event()
        self.calls = 0
        original = getattr(backend, method)

        def gated(*args: Any) -> Any:
            self.calls += 1
            self.entered.set()
            if not self.released.wait(HANG):
                raise RuntimeError("gate never opened")
            return original(*args)

        setattr(backend, method, gated)

    async def wait_entered(self) -> None:
        """Return once the worker is inside the gated call (the batcher is busy)."""
        assert await asyncio.to_thread(self.entered.wait, HANG), "the worker never reached the gate"

    def open(self) -> None:
        self.released.set()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (yielding to the event loop) until ``condition()`` holds."""
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)
