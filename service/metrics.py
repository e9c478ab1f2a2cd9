"""Prometheus metrics of the service. Their names are part of the contract: the Grafana dashboard,
the alert rules and the README's panel table read them.

With several server processes (``CMAL_PROCESSES``) every process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (set by the parent before any process imports prometheus_client) and
``/metrics``, whichever process answers it, adds them up (`prometheus_client.multiprocess`):
counters and histograms sum, the queue gauges sum over live processes, readiness is the least
ready process's. ``process_*`` metrics, which prometheus_client cannot aggregate, are read from
/proc for every live process (`ServerProcesses`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from cmal.tasks import ROUTES

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

# Every latency histogram (HTTP, queue wait, inference stages) uses these buckets: 1 ms to 10 s,
# each bound at most 1.33 x the last (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5 per decade).
# histogram_quantile interpolates linearly inside a bucket, so when requests bunch in one bucket
# a quantile can be off by half its width: at most about 17% here, where the old HTTP buckets
# (0.1, 0.5, 1 s) turned real p50s of 12-27 ms into 51 ms. The range covers a GPU's single-digit
# milliseconds and a loaded CPU's seconds, up to the 10 s deadline; 41 buckets per series.
_STEPS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5)
LATENCY_BUCKETS = (
    *(round(step * 10.0**exponent, 6) for exponent in (-3, -2, -1, 0) for step in _STEPS),
    10.0,
)

REQUESTS = Counter("cmal_requests_total", "Task requests by outcome", ["task", "outcome"])
BATCH_SIZE = Histogram(
    "cmal_batch_size", "Requests per inference batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
)
QUEUE_WAIT = Histogram(
    "cmal_queue_wait_seconds",
    "Time from enqueue to the start of the request's batch",
    buckets=LATENCY_BUCKETS,
)
INFERENCE = Histogram(
    "cmal_inference_seconds",
    "Inference time per batch and stage",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge("cmal_queue_depth", "Requests waiting for a batch", multiprocess_mode="livesum")
QUEUE_CAPACITY = Gauge(
    "cmal_queue_capacity",
    "Requests the queue holds before 429s (CMAL_MAX_QUEUE)",
    multiprocess_mode="livesum",
)
READY = Gauge(
    "cmal_ready",
    "1 while the model is loaded and the service takes traffic, else 0",
    multiprocess_mode="livemin",
)
MODEL_INFO = Gauge(
    "cmal_model_info",
    "The served model",
    ["name", "version", "backend", "provider"],
    multiprocess_mode="livemax",
)
CACHE = Counter(
    "cmal_detector_cache_total",
    "Requests by whether their image needed its own detector pass (miss) or not (hit)",
    ["result"],
)

TASKS = ROUTES  # the task label is the endpoint's name
OUTCOMES = ("ok", "bad_request", "rejected", "timeout", "dropped", "error")


# nginx's status for "the client closed the connection before the answer": never reaches a
# client, but counts the request (outcome "dropped") so every accepted request is accounted for
CLIENT_CLOSED_REQUEST = 499


def outcome_of(status: int) -> str:
    """The ``outcome`` label of a failed request's HTTP status."""
    if status == 429:
        return "rejected"
    if status == 504:
        return "timeout"
    if status == CLIENT_CLOSED_REQUEST:
        return "dropped"
    return "error" if status >= 500 else "bad_request"


def count_failure(path: str, status: int) -> None:
    """Count a task endpoint's failed answer (other paths are not task requests)."""
    task = path.removeprefix("/v1/")
    if task in TASKS:
        REQUESTS.labels(task, outcome_of(status)).inc()


class _Forward:
    """A collector that yields another registry's metrics (the process-wide ``cmal_*`` ones)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        """The forwarded registry's metrics."""
        return self.registry.collect()


def app_registry() -> CollectorRegistry:
    """One registry for an app's ``/metrics``: its own HTTP metrics (one app, one set) plus the
    process-wide ``cmal_*`` metrics, exposed together once."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Forward(REGISTRY))
    return registry


def exposed_registry(app_registry: CollectorRegistry) -> CollectorRegistry:
    """What ``/metrics`` serves: ``app_registry`` in one process; with several, every process's
    values added up from their files, and every live process's resident memory and CPU time."""
    if not MULTIPROCESS_DIR:
        return app_registry
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(ServerProcesses(Path(MULTIPROCESS_DIR)))
    return registry


class ServerProcesses:
    """``process_resident_memory_bytes`` and ``process_cpu_seconds_total`` summed over the live
    server processes (those with a metrics file in the multiprocess folder), from /proc."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.tick = os.sysconf("SC_CLK_TCK")

    def pids(self) -> set[int]:
        """Processes that wrote metrics and still run."""
        found = {
            int(f.stem.rsplit("_", 1)[1])
            for f in self.folder.glob("*.db")
            if f.stem.rsplit("_", 1)[1].isdigit()
        }
        return {pid for pid in found if Path(f"/proc/{pid}").exists()}

    def collect(self) -> Iterable[Metric]:
        """The two process metrics, summed."""
        rss, cpu = 0.0, 0.0
        for pid in self.pids():
            try:
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self.page
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / self.tick
            except (OSError, IndexError, ValueError):
                continue  # it exited meanwhile
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the server processes", rss
        )
        yield CounterMetricFamily("process_cpu_seconds_total", "CPU time of the live server processes", cpu)


def initialise() -> None:
    """Create every label combination at zero, so dashboards show 0 rather than no data; drop the
    ``*_created`` series (timestamps nobody charts, doubling the series count)."""
    disable_created_metrics()
    for task in TASKS:
        for outcome in OUTCOMES:
            REQUESTS.labels(task, outcome)
    for stage in ("detector", "fusion"):
        INFERENCE.labels(stage)
    for result in ("hit", "miss"):
        CACHE.labels(result)
