"""Dynamic batching: one asyncio queue feeding the detector and fusion graphs in batches.

Inference runs in ``workers`` threads off the event loop, each running whole batches (detector,
then fusion) while the others run theirs: on a CPU whose graphs hardly speed up with more
threads per call, two single-threaded calls side by side do nearly twice the work of one call on
two threads. Whenever a worker is free and requests are waiting, a batch of up to
``max_batch_size`` fusion rows starts; while every worker is busy, requests gather into the next
batch. With ``max_batch_delay_ms`` above 0 a free worker also waits up to that long after the
oldest request for a fuller batch (worth it only where a bigger batch is much cheaper per row,
as on a GPU), except right after a batch that ran alone (one row): nobody else was asking.

The queue is bounded (excess -> `QueueFull`, answered 429 with Retry-After); each request has a
deadline (-> `DeadlineExceeded`, 504); a remote backend's (Triton's) full queue, deadline and
absence keep their meanings (429, 504, 503); a request whose client hangs up is withdrawn from the
queue at once (`withdraw`). The same image in several requests (or one /v1/matching request's
texts) is detected once: a content-hash LRU cache keeps recent detector results. Workers decode
the images they detect (the event loop only checks headers), so decoding runs beside the event
loop; an image that fails to decode fails only its own request, any other exception only the
batch it happened in.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from cmal.inference import Regions
from service import metrics
from service.images import ImageError, finish_image
from service.runtime import Backend, BackendOverloaded, BackendTimeout, BackendUnavailable


class QueueFull(Exception):
    """The queue already holds ``max_queue`` jobs (answered 429)."""


class DeadlineExceeded(Exception):
    """A job's deadline passed before it reached a batch (answered 504)."""


class BatchFailed(Exception):
    """Inference raised on the job's batch (answered 500); the message names the exception."""


class Unavailable(Exception):
    """The remote inference server cannot be reached (answered 503)."""


class ClientGone(Exception):
    """The client hung up before its answer was ready (a queued request is withdrawn at once)."""


@dataclass(eq=False)  # identity: finding a job in the queue must not compare images
class Job:
    """One queued request: its task, image (``image_key``: content hash), texts, deadline
    (`time.perf_counter` seconds) and the future its `JobResult` goes to.
    """

    task: str
    image_key: str
    image: Image.Image  # opened, its header checked; a worker decodes it (`finish_image`)
    texts: list[str]
    deadline: float
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.perf_counter)
    abandoned: bool = False  # withdrawn: its client left or its deadline passed
    started: float = 0.0  # when its batch was taken from the queue
    enqueued_ns: int = field(default_factory=time.time_ns)  # the same moments in epoch ns (tracing)
    started_ns: int = 0


@dataclass
class JobResult:
    """A job's share of a batch: its image's regions and its texts' output rows."""

    regions: Regions  # this job's image only (1 row)
    outputs: dict[str, np.ndarray]  # rows of this job's texts
    batch_rows: int = 0  # text rows in the batch the job ran in
    queue_wait_s: float = 0.0  # from enqueue to the start of its batch
    # when each stage ran, (start, end) in epoch ns, for tracing: queue, detector, fusion
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)


class Batcher:
    """Queues jobs and runs them on ``backend`` in batches (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        max_batch_size: int,
        max_batch_delay_ms: float,
        max_queue: int,
        cache_size: int,
        workers: int = 1,
    ):
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.delay = max_batch_delay_ms / 1000
        self.max_queue = max_queue
        self.cache_size = cache_size
        self.cache: OrderedDict[str, Regions] = OrderedDict()
        self.cache_lock = threading.Lock()  # the workers share the cache
        self.pending: deque[Job] = deque()
        self.wakeup = asyncio.Event()
        self.idle_workers = workers
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cmal-infer")
        self.task: asyncio.Task[None] | None = None
        self.running: set[asyncio.Task[None]] = set()  # batches being run
        self.in_flight = 0
        # rows of the last batch: the load it saw (starts as if busy, so a first burst gathers)
        self.last_rows = max_batch_size

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Cancel the batching loop, let running batches finish, and stop the worker threads."""
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)
        self.executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        """Number of jobs waiting in the queue."""
        return len(self.pending)

    def withdraw(self, job: Job, reason: Exception | None = None) -> None:
        """Take ``job`` out of the queue (its client left, or its deadline passed); a job already
        running just has its result ignored. Its future fails with ``reason`` for a caller still
        waiting on it, or is cancelled (None) when nobody is."""
        job.abandoned = True
        if job in self.pending:
            self.pending.remove(job)
            metrics.QUEUE_DEPTH.set(len(self.pending))
        if not job.future.done():
            if reason is None:
                job.future.cancel()
            else:
                job.future.set_exception(reason)

    async def submit(
        self, task: str, image_key: str, image: Image.Image, texts: list[str], timeout_s: float
    ) -> Job:
        """Queue a job and return it; await ``job.future`` for the `JobResult`."""
        if len(self.pending) >= self.max_queue:
            raise QueueFull()
        loop = asyncio.get_running_loop()
        job = Job(task, image_key, image, texts, time.perf_counter() + timeout_s, loop.create_future())
        self.pending.append(job)
        metrics.QUEUE_DEPTH.set(len(self.pending))
        self.wakeup.set()
        return job

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wakeup.wait()  # a new job, or a worker became free
            self.wakeup.clear()
            while self.pending and self.idle_workers:
                if self.delay:
                    await self._gather()
                batch = self._take()
                metrics.QUEUE_DEPTH.set(len(self.pending))
                if not batch:
                    continue
                self.in_flight += len(batch)
                self.idle_workers -= 1
                self.last_rows = sum(len(j.texts) for j in batch)
                task = loop.create_task(self._execute(batch))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    async def _gather(self) -> None:
        """Wait until the queue holds ``max_batch_size`` rows or its oldest live job has waited
        ``delay`` (re-read each time: that job may have been withdrawn meanwhile); not at all
        when the last batch ran alone (one row: nobody else was asking, waiting only adds delay)."""
        while self.pending and self._rows() < self.max_batch_size and self.last_rows > 1:
            wait = self.pending[0].enqueued + self.delay - time.perf_counter()
            if wait <= 0:
                break
            await asyncio.sleep(min(0.001, wait))

    async def _execute(self, batch: list[Job]) -> None:
        """Run one batch on a worker thread and settle its jobs' futures."""
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, self._run, batch)
        except Exception as e:  # one batch's failure fails only its requests
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(_outcome(e))
        else:
            for job, result in zip(batch, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, ImageError):  # its image alone failed to decode
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
        finally:
            self.in_flight -= len(batch)
            self.idle_workers += 1
            self.wakeup.set()

    def _rows(self) -> int:
        return sum(len(j.texts) for j in self.pending)

    def _take(self) -> list[Job]:
        """Pop up to max_batch_size rows of live jobs, skipping settled ones and expiring late ones.

        Outcomes are counted where each request is answered (the endpoint), never here.
        """
        batch: list[Job] = []
        rows = 0
        now = time.perf_counter()
        while self.pending and (not batch or rows + len(self.pending[0].texts) <= self.max_batch_size):
            job = self.pending.popleft()
            if job.future.done() or job.abandoned:
                continue
            if now > job.deadline:
                job.future.set_exception(DeadlineExceeded())
                continue
            metrics.QUEUE_WAIT.observe(now - job.enqueued)
            job.started, job.started_ns = now, time.time_ns()
            batch.append(job)
            rows += len(job.texts)
        return batch

    def _run(self, batch: list[Job]) -> list[JobResult | ImageError]:
        """Decode and detect uncached images once each, then fuse every text row in one call
        (worker thread). A job whose image fails to decode gets its `ImageError` instead of a
        result; the rest of the batch runs without it."""
        todo: dict[str, Image.Image] = {}
        # each image's regions are taken from the cache as it is looked up: inserting this batch's
        # misses below may evict them when the cache is smaller than the batch
        found: dict[str, Regions] = {}
        with self.cache_lock:
            for job in batch:
                key = job.image_key
                if key in found or key in todo:  # another request of this batch brought the image
                    metrics.CACHE.labels("hit").inc()
                    continue
                if key in self.cache:
                    self.cache.move_to_end(key)
                    found[key] = self.cache[key]
                    metrics.CACHE.labels("hit").inc()
                else:
                    todo[key] = job.image
                    metrics.CACHE.labels("miss").inc()
        broken: dict[str, ImageError] = {}
        for key, image in list(todo.items()):  # decoding releases the GIL: beside the event loop
            try:
                todo[key] = finish_image(image)
            except ImageError as e:
                broken[key] = e
                del todo[key]
        if broken:
            failed = batch
            batch = [j for j in batch if j.image_key not in broken]
            if not batch:
                return [broken[j.image_key] for j in failed]
        detector = (0, 0)
        if todo:
            start, start_ns = time.perf_counter(), time.time_ns()
            regions = self.backend.detect(list(todo.values()))
            metrics.INFERENCE.labels("detector").observe(time.perf_counter() - start)
            detector = (start_ns, time.time_ns())
            with self.cache_lock:
                for i, key in enumerate(todo):
                    found[key] = regions.take([i])
                    if self.cache_size:
                        self.cache[key] = found[key]
                        if len(self.cache) > self.cache_size:
                            self.cache.popitem(last=False)
        per_job = [found[j.image_key] for j in batch]
        texts = [t for j in batch for t in j.texts]
        rows = [i for i, j in enumerate(batch) for _ in j.texts]
        stacked = _stack(per_job)
        start, start_ns = time.perf_counter(), time.time_ns()
        outputs = self.backend.fuse(texts, stacked.take(rows))
        metrics.INFERENCE.labels("fusion").observe(time.perf_counter() - start)
        fusion = (start_ns, time.time_ns())
        metrics.BATCH_SIZE.observe(len(texts))
        results: dict[int, JobResult | ImageError] = {}
        offset = 0
        for job, regions in zip(batch, per_job, strict=True):
            n = len(job.texts)
            own = {k: v[offset : offset + n] for k, v in outputs.items()}
            stages = {"queue": (job.enqueued_ns, job.started_ns), "detector": detector, "fusion": fusion}
            results[id(job)] = JobResult(regions, own, len(texts), job.started - job.enqueued, stages)
            offset += n
        if broken:
            return [broken[j.image_key] if j.image_key in broken else results[id(j)] for j in failed]
        return list(results.values())


def _outcome(error: Exception) -> Exception:
    """What a batch's jobs fail with when running it raised ``error``: a remote server's
    rejection, deadline or absence keeps its meaning (429, 504, 503); anything else is a
    `BatchFailed` (500) naming the exception."""
    if isinstance(error, BackendOverloaded):
        return QueueFull(str(error))
    if isinstance(error, BackendTimeout):
        return DeadlineExceeded(str(error))
    if isinstance(error, BackendUnavailable):
        return Unavailable(str(error))
    return BatchFailed(f"inference failed: {type(error).__name__}: {error}")


def _stack(parts: list[Regions]) -> Regions:
    return Regions(
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.tags for p in parts]),
        np.concatenate([p.attributes for p in parts]),
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.valid for p in parts]),
        [s for p in parts for s in p.sizes],
    )
