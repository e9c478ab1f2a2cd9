"""The service gives freed heap memory back only while it is idle."""

from __future__ import annotations

import asyncio

import pytest

from service import memory
from tests.service.sync import until


def test_heap_is_trimmed_only_while_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []
    monkeypatch.setattr(memory, "MALLOC_TRIM", lambda: trims.append(1))
    idle = iter([False, False, True])  # busy, busy, idle, then busy for ever

    async def go() -> None:
        task = asyncio.create_task(memory.trim_when_idle(lambda: next(idle, False), period_s=0))
        await until(lambda: len(trims) == 1, "a trim while idle")
        for _ in range(20):  # let it check (busy) many more times
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(go())
    assert trims == [1]


def test_this_platform_can_trim() -> None:
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    assert memory.MALLOC_TRIM is not None
    memory.MALLOC_TRIM()
