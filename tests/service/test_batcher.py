"""The batcher alone, over a fake backend: batch closing, the bounded queue, withdrawal, deadlines,
the detector cache and failure isolation. Deterministic: the worker is held with a `Gate`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cmal.inference import Regions
from service.batcher import Batcher, BatchFailed, ClientGone, DeadlineExceeded, QueueFull
from tests.service.sync import Gate, until

K = 2  # region slots per image


class FakeBackend:
    """Answers with recognisable numbers: each text row's logit is its text's length."""

    name, provider = "fake", "cpu"

    def __init__(self) -> None:
        self.detected: list[int] = []  # images per detector call
        self.fused: list[list[str]] = []  # texts per fusion call
        self.fail_on: str | None = None

    def detect(self, images: Sequence[Image.Image]) -> Regions:
        self.detected.append(len(images))
        n = len(images)
        return Regions(
            np.zeros((n, K, 4), np.float32), np.ones((n, K), np.float32), np.zeros((n, K), np.int64),
            np.zeros((n, K), np.int64), np.zeros((n, K, 8), np.float32), np.ones((n, K), bool),
            [im.size for im in images],
        )  # fmt: skip

    def fuse(self, texts: Sequence[str], regions: Regions) -> dict[str, np.ndarray]:
        self.fused.append(list(texts))
        if self.fail_on in texts:
            raise RuntimeError("boom")
        return {"itm_logits": np.array([float(len(t)) for t in texts])}


def image(width: int = 8) -> Image.Image:
    return Image.new("RGB", (width, 8))


def run(fn: Any, **options: Any) -> None:
    async def main() -> None:
        backend = FakeBackend()
        settings = {"max_batch_size": 4, "max_batch_delay_ms": 1.0, "max_queue": 8, "cache_size": 16}
        batcher = Batcher(backend, **{**settings, **options})  # type: ignore[arg-type]
        batcher.start()
        try:
            await fn(batcher, backend)
        finally:
            await batcher.stop()

    asyncio.run(main())


def test_a_waiting_queue_is_served_in_batches_of_at_most_max_rows() -> None:
    async def go(batcher: Batcher, backend: FakeBackend) -> None:
        gate = Gate(backend)
        first = await batcher.submit("vqa", "a", image(), ["q0"], 60)
        await gate.wait_entered()
        # a matching request with three texts is three rows: it cannot join a batch holding two
        jobs = [await batcher.submit("vqa", "a", image(), [f"q{i}"], 60) for i in range(1, 3)]
        jobs.append(await batcher.submit("matching", "a", image(), ["x", "yy", "zzz"], 60))
        jobs += [await batcher.submit("vqa", "a", image(), [f"q{i}"], 60) for i in range(3, 5)]
        gate.open()
        results = [await first.future, *[await j.future for j in jobs]]
        assert [len(b) for b in backend.fused] == [1, 2, 4, 1]  # rows: [q0], [q1 q2], [x yy zzz q3], [q4]
        assert results[3].outputs["itm_logits"].tolist() == [1.0, 2.0, 3.0]  # its own rows, in order
        assert backend.detected == [1]  # one image, detected once, then from the cache

    run(go)


def test_the_queue_is_bounded_and_a_withdrawn_job_leaves_it() -> None:
    async def go(batcher: Batcher, backend: FakeBackend) -> None:
        gate = Gate(backend)
        running = await batcher.submit("vqa", "a", image(), ["busy"], 60)
        await gate.wait_entered()
        queued = [await batcher.submit("vqa", f"k{i}", image(), ["q"], 60) for i in range(3)]
        with pytest.raises(QueueFull):
            await batcher.submit("vqa", "full", image(), ["q"], 60)
        batcher.withdraw(queued[1], ClientGone())
        assert batcher.depth == 2
        with pytest.raises(ClientGone):
            await queued[1].future
        late = await batcher.submit("vqa", "k3", image(), ["q"], 60)  # room again
        gate.open()
        for job in (running, queued[0], queued[2], late):
            await job.future
        assert sum(len(b) for b in backend.fused) == 4  # the withdrawn job never ran

    run(go, max_queue=3)


def test_a_job_past_its_deadline_is_not_run() -> None:
    async def go(batcher: Batcher, backend: FakeBackend) -> None:
        gate = Gate(backend)
        running = await batcher.submit("vqa", "a", image(), ["busy"], 60)
        await gate.wait_entered()
        expired = await batcher.submit("vqa", "b", image(), ["too late"], 0.0)  # deadline now
        gate.open()
        await running.future
        with pytest.raises(DeadlineExceeded):
            await expired.future
        assert ["too late"] not in backend.fused

    run(go)


def test_a_failing_batch_fails_only_its_own_jobs() -> None:
    async def go(batcher: Batcher, backend: FakeBackend) -> None:
        backend.fail_on = "bad"
        gate = Gate(backend)
        bad = await batcher.submit("vqa", "a", image(), ["bad"], 60)
        await gate.wait_entered()
        good = await batcher.submit("vqa", "b", image(), ["good"], 60)
        gate.open()
        with pytest.raises(BatchFailed, match="boom"):
            await bad.future
        assert (await good.future).outputs["itm_logits"].tolist() == [4.0]

    run(go)


def test_the_cache_keeps_recent_images_and_evicts_the_oldest() -> None:
    async def go(batcher: Batcher, backend: FakeBackend) -> None:
        for key in ("a", "b", "a", "c", "a", "b"):  # one at a time: each its own batch
            job = await batcher.submit("vqa", key, image(), ["q"], 60)
            await job.future
            await until(lambda: batcher.in_flight == 0, "the batch to finish")
        # cache of 2: a, b (miss, miss), a (hit), c (miss, evicts b), a (hit), b (miss again)
        assert backend.detected == [1, 1, 1, 1]
        assert list(batcher.cache) == ["a", "b"]

    run(go, cache_size=2)


def test_a_request_after_a_lone_batch_starts_at_once_and_one_after_a_shared_batch_gathers() -> None:
    async def go(batcher: Batcher, backend: FakeBackend) -> None:
        first = [await batcher.submit("vqa", f"k{i}", image(), ["q"], 3600) for i in range(2)]
        for job in first:  # two rows fill the batch (max 2): it runs without waiting
            await job.future
        await until(lambda: batcher.in_flight == 0, "the shared batch to finish")
        batcher.delay = 3600.0  # from now on, waiting for company would take an hour
        waiting = await batcher.submit("vqa", "k2", image(), ["q"], 3600)
        for _ in range(200):  # the loop runs many times, and keeps gathering after a shared batch
            await asyncio.sleep(0)
        assert batcher.depth == 1 and not waiting.future.done()
        batcher.withdraw(waiting)
        batcher.last_rows = 1  # as after a batch that ran alone: nobody else was asking
        alone = await batcher.submit("vqa", "k3", image(), ["q"], 3600)
        await asyncio.wait_for(alone.future, 60)  # starts at once instead of waiting the hour
        assert [len(b) for b in backend.fused] == [2, 1]

    run(go, max_batch_size=2)


def test_with_two_workers_a_batch_runs_while_the_other_is_held() -> None:
    async def go(batcher: Batcher, backend: FakeBackend) -> None:
        gate = Gate(backend, method="detect")  # every detector call waits until the gate opens
        held = await batcher.submit("vqa", "a", image(), ["held"], 60)
        await gate.wait_entered()
        other = await batcher.submit("vqa", "b", image(), ["other"], 60)
        # with one worker this call could only come after the first batch had finished
        await until(lambda: gate.calls == 2, "the second worker to reach the detector")
        assert not held.future.done() and not other.future.done()
        gate.open()
        assert (await other.future).outputs["itm_logits"].tolist() == [5.0]
        assert (await held.future).outputs["itm_logits"].tolist() == [4.0]
        assert sorted(backend.fused) == [["held"], ["other"]]  # two batches side by side

    run(go, workers=2, max_batch_delay_ms=0.0)


def test_an_image_that_fails_to_decode_fails_only_its_own_job() -> None:
    import io

    from service.images import ImageError, probe_image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (250, 10, 10)).save(buffer, format="PNG")
    truncated = buffer.getvalue()[:-40]  # the header is whole, the pixels are not

    async def go(batcher: Batcher, backend: FakeBackend) -> None:
        gate = Gate(backend)
        first = await batcher.submit("vqa", "ok0", image(), ["held"], 60)
        await gate.wait_entered()  # the next two queue up and run as one batch
        broken = await batcher.submit("vqa", "bad", probe_image(truncated, 2**20, 10**6), ["b"], 60)
        fine = await batcher.submit("vqa", "ok1", image(), ["fine"], 60)
        gate.open()
        await first.future
        with pytest.raises(ImageError, match="could not be decoded") as failure:
            await broken.future
        assert failure.value.status == 422
        assert (await fine.future).outputs["itm_logits"].tolist() == [4.0]
        assert backend.fused[-1] == ["fine"]  # the batch ran without the broken image

    run(go, max_batch_delay_ms=0.0)
