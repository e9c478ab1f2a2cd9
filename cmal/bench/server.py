"""The service as a real process for benchmarks and load tests: start it, time its cold start,
read its metrics, stop it the way an orchestrator does (SIGTERM)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_ok(url: str) -> bool:
    """Whether ``url`` answers 200 within a second (False for any other status or no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def ready(port: int) -> bool:
    """Whether the service on ``port`` answers ``/readyz`` with 200."""
    return answers_ok(f"http://127.0.0.1:{port}/readyz")


def start_service(
    model_dir: Path,
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 180,
    cpus: set[int] | None = None,
) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``python -m service`` on 127.0.0.1:``port`` serving ``model_dir`` with extra ``CMAL_*``
    settings in ``env`` and its output appended to ``log``; wait until ``/readyz`` is 200 and
    return the process and the seconds that took (the cold start: interpreter, imports, model
    load, warm-up). With ``cpus`` the service and everything it starts run on those CPUs only
    (its thread counts follow the affinity mask).

    Raises:
        RuntimeError: the process exited or never became ready (the end of its log is in the message).
    """
    environment = {**os.environ, "CMAL_MODEL_DIR": str(model_dir), **(env or {})}
    with log.open("ab") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )  # fmt: skip
    while time.perf_counter() - began < timeout_s:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the service exited with {proc.returncode}; the end of {log}:\n{tail}")
        if ready(port):
            return proc, time.perf_counter() - began
        time.sleep(0.01)
    stop_service(proc)
    raise RuntimeError(f"the service was not ready after {timeout_s:.0f} s")


def stop_service(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    """SIGTERM (the service drains, then exits); kill after ``timeout_s``. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def scrape(port: int) -> dict[str, float]:
    """The server's request counts by outcome, plus its engine's busy seconds (detector and
    fusion, ``engine_s``) and the text rows it has run (``rows``)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    counts: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "cmal_requests_total":
                counts[s.labels["outcome"]] += s.value
            elif s.name == "cmal_inference_seconds_sum":
                counts["engine_s"] += s.value
            elif s.name == "cmal_batch_size_sum":
                counts["rows"] += s.value
            elif s.name == "cmal_batch_size_count":
                counts["batches"] += s.value
    return dict(counts)
