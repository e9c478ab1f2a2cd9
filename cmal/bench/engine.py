"""The engine alone, in-process: a backend's detector + fusion on decoded images, per batch size.

This is the ceiling the service is measured against: the same backend object the service
builds (`service.runtime.load_backend`), fed whole batches with no HTTP, queue or decoding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from service.runtime import Backend


def time_batches(
    backend: Backend,
    images: Sequence[Image.Image],
    texts: Sequence[str],
    batch_size: int,
    seconds: float,
    warmup_s: float = 0.0,
) -> dict[str, Any]:
    """Run consecutive batches of ``batch_size`` (image, text) samples for at least ``seconds``
    (and at least 3 batches) after untimed warm-up batches: one, and more until ``warmup_s`` has
    passed (a GPU loads each kernel and picks each product's algorithm on its first use, and
    every new text length is a new shape); samples/s and batch latency."""

    def batch(i: int) -> tuple[list[Image.Image], list[str]]:
        idx = [(i * batch_size + k) % len(images) for k in range(batch_size)]
        return [images[k] for k in idx], [texts[k] for k in idx]

    i = 0
    warm_until = time.perf_counter() + warmup_s
    while i == 0 or time.perf_counter() < warm_until:
        warm_images, warm_texts = batch(i)
        backend.fuse(warm_texts, backend.detect(warm_images))
        i += 1
    latencies: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds or len(latencies) < 3:
        ims, txts = batch(i)
        start = time.perf_counter()
        backend.fuse(txts, backend.detect(ims))
        latencies.append(time.perf_counter() - start)
        i += 1
    total = sum(latencies)
    return {
        "batch_size": batch_size,
        "batches": len(latencies),
        "samples_per_s": round(batch_size * len(latencies) / total, 2),
        "batch_p50_ms": round(1000 * float(np.median(latencies)), 3),
        "ms_per_sample": round(1000 * total / (batch_size * len(latencies)), 3),
    }


def time_parallel(
    backend: Backend,
    images: Sequence[Image.Image],
    texts: Sequence[str],
    batch_size: int,
    seconds: float,
    workers: int,
) -> dict[str, Any]:
    """``workers`` threads each running consecutive batches on the same backend for ``seconds``
    (the engine as the service's workers use it: calls side by side); total samples/s."""
    import threading

    done = [0] * workers
    stop = time.perf_counter() + seconds

    def work(w: int) -> None:
        i = w
        while time.perf_counter() < stop:
            idx = [(i * batch_size + k) % len(images) for k in range(batch_size)]
            backend.fuse([texts[k] for k in idx], backend.detect([images[k] for k in idx]))
            done[w] += batch_size
            i += workers

    work_threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    began = time.perf_counter()
    for t in work_threads:
        t.start()
    for t in work_threads:
        t.join()
    elapsed = time.perf_counter() - began
    return {"batch_size": batch_size, "workers": workers, "samples_per_s": round(sum(done) / elapsed, 2)}
