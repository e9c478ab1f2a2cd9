"""Prometheus metrics of the service. Their names are part of the contract: the Grafana dashboard,
the alert rules and the README's panel table read them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from cmal.tasks import ROUTES

REQUESTS = Counter("cmal_requests_total", "Task requests by outcome", ["task", "outcome"])
BATCH_SIZE = Histogram(
    "cmal_batch_size", "Requests per inference batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
)
QUEUE_WAIT = Histogram(
    "cmal_queue_wait_seconds",
    "Time from enqueue to the start of the request's batch",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INFERENCE = Histogram(
    "cmal_inference_seconds",
    "Inference time per batch and stage",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
QUEUE_DEPTH = Gauge("cmal_queue_depth", "Requests waiting for a batch")
MODEL_INFO = Gauge("cmal_model_info", "The served model", ["name", "version", "backend", "provider"])
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


def initialise() -> None:
    """Create every label combination at zero, so dashboards show 0 rather than no data."""
    for task in TASKS:
        for outcome in OUTCOMES:
            REQUESTS.labels(task, outcome)
    for stage in ("detector", "fusion"):
        INFERENCE.labels(stage)
    for result in ("hit", "miss"):
        CACHE.labels(result)
