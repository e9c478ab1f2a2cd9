"""The service gives freed heap memory back only while it is idle, and keeps its start-up heap out
of full garbage collections."""

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


def test_the_start_up_heap_is_frozen_while_serving_and_thawed_after(tiny_exported) -> None:  # type: ignore[no-untyped-def]
    import gc

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(model_dir=tiny_exported, workers=1))
    before = gc.get_freeze_count()

    async def serve() -> int:
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            gc.collect()  # a full collection leaves the frozen objects frozen
            assert gc.get_freeze_count() == frozen
            return frozen

    assert asyncio.run(serve()) > before  # the model, sessions and app were frozen once loaded
    assert gc.get_freeze_count() == 0  # and handed back at shutdown
