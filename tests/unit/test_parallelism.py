"""How the service splits the usable cores into inference workers and threads per call."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import runtime
from service.runtime import TRITON_WORKERS, parallelism


@pytest.fixture
def cpu_host(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(runtime, "has_gpu", lambda kind: False)
    return monkeypatch


@pytest.mark.parametrize(
    ("cores", "processes", "workers", "threads", "expected"),
    [
        (2, 1, 0, 0, (2, 1)),  # one single-threaded worker per core
        (2, 2, 0, 0, (1, 1)),  # one process per core
        (1, 1, 0, 0, (1, 1)),  # pinned to one core: one thread, never the runtime's default
        (4, 1, 1, 0, (1, 4)),  # one worker asked for: it gets the usable cores as threads
        (4, 1, 2, 0, (2, 2)),
        (8, 1, 0, 3, (8, 3)),  # asked-for values are kept
    ],
)
def test_cpu_threads_are_always_explicit_and_within_the_affinity_mask(
    cpu_host: pytest.MonkeyPatch,
    cores: int,
    processes: int,
    workers: int,
    threads: int,
    expected: tuple[int, int],
) -> None:
    cpu_host.setattr(runtime, "usable_cores", lambda: cores)
    assert parallelism("onnx", workers, threads, processes) == expected


def test_gpu_keeps_one_worker_and_the_runtimes_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "has_gpu", lambda kind: True)
    assert parallelism("onnx", 0, 0) == (1, 0)


def test_triton_workers_wait_on_the_network() -> None:
    assert parallelism("triton", 0, 0) == (TRITON_WORKERS, 0)


def test_onnx_sessions_never_spin(tiny_exported: Path) -> None:
    """Detector and fusion run in turn: idle threads of one must not spin on the cores the other needs."""
    from cmal.inference import OnnxModel

    model = OnnxModel(tiny_exported, threads=2)
    for session in (model.detector, model.fusion):
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.intra_op_num_threads == 2
