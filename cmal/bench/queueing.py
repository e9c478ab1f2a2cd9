"""The latency an ideal batching server would give: the floor under `cmal bench`'s open-loop p99/p50.

Poisson arrivals at a given rate into one engine that, whenever it is free, takes every waiting
request (up to the largest batch) as one batch, and otherwise starts a request the moment it
arrives: no HTTP, no decoding, no thread hops, no scheduling noise. A batch of n takes the
engine's measured time for n (linear between the measured batch sizes). What this gives at the
service's open-loop rate is the queueing the engine's own batch curve implies at that load; what
the measured service adds on top is the service's doing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import numpy as np

ARRIVALS = 200_000  # simulated requests: p99 from 2,000 of them at the tail


def batch_seconds(points: Mapping[int, float]) -> Callable[[int], float]:
    """A batch of n's time in seconds, linear between the measured ``{batch size: seconds}`` points
    (and along the last two points' slope past the largest; at least the smallest's time below it)."""
    sizes = sorted(points)
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive, got {sizes}")
    times = [points[n] for n in sizes]

    def seconds(n: int) -> float:
        if n <= sizes[0]:
            return times[0]
        if len(sizes) == 1:  # one point: time per sample
            return times[0] * n / sizes[0]
        if n >= sizes[-1]:
            slope = (times[-1] - times[-2]) / (sizes[-1] - sizes[-2])
            return times[-1] + slope * (n - sizes[-1])
        return float(np.interp(n, sizes, times))

    return seconds


def simulate(
    rate: float, batch_time: Callable[[int], float], max_batch: int, arrivals: int = ARRIVALS, seed: int = 0
) -> dict[str, float]:
    """Latency quantiles (ms) of ``arrivals`` Poisson requests at ``rate`` a second through the ideal
    batching server; ``p99_over_p50`` is the figure `cmal bench`'s open loop is judged by."""
    if rate <= 0 or max_batch < 1:
        raise ValueError(f"need rate > 0 and max_batch >= 1, got {rate}, {max_batch}")
    rng = random.Random(seed)
    t, times = 0.0, []
    for _ in range(arrivals):
        t += rng.expovariate(rate)
        times.append(t)
    arrived = np.asarray(times)  # the same values, for slicing a batch's arrivals at once
    latencies = np.empty(arrivals)
    free, i, batches = 0.0, 0, 0
    while i < arrivals:
        start = max(free, times[i])
        j = i + 1
        while j < arrivals and j - i < max_batch and times[j] <= start:
            j += 1
        free = start + batch_time(j - i)
        latencies[i:j] = free - arrived[i:j]
        i, batches = j, batches + 1
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    return {
        "p50_ms": round(float(p50), 3),
        "p99_ms": round(float(p99), 3),
        "p99_over_p50": round(float(p99 / p50), 3),
        "mean_ms": round(float(latencies.mean() * 1e3), 3),
        "mean_batch_rows": round(arrivals / batches, 2),
    }


def floor(engine_points: list[dict[str, float]], rate: float, seed: int = 0) -> dict[str, float]:
    """`simulate` for one backend's engine figures as `cmal bench` records them (``batch_size``,
    ``batch_p50_ms``), at ``rate`` requests a second, batches up to the largest measured."""
    points = {int(p["batch_size"]): p["batch_p50_ms"] / 1e3 for p in engine_points}
    return simulate(rate, batch_seconds(points), max(points), seed=seed)
