"""How the service splits the usable cores into inference workers and threads per call."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import runtime
from service.runtime import TRITON_WORKERS, lone_threads, parallelism


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


@pytest.mark.parametrize(
    ("kind", "cores", "processes", "expected"),
    [
        ("onnx", 2, 1, 2),  # two one-thread workers: a lone detector call takes both cores
        ("onnx", 4, 1, 4),
        ("onnx", 2, 2, 0),  # one process per core: no idle core of its own to take
        ("onnx", 8, 2, 4),  # the process's share
        ("torch", 2, 1, 0),  # torch's threads are one setting for the whole process
        ("triton", 2, 1, 0),
    ],
)
def test_a_lone_detector_call_takes_the_process_share_of_the_cores(
    cpu_host: pytest.MonkeyPatch, kind: str, cores: int, processes: int, expected: int
) -> None:
    cpu_host.setattr(runtime, "usable_cores", lambda: cores)
    workers, threads = parallelism(kind, 0, 0, processes)
    assert lone_threads(kind, workers, threads, processes) == expected
    assert lone_threads(kind, 1, cores, 1) == 0  # one worker already has every core


def test_the_lone_session_runs_only_calls_that_start_alone(tiny_exported: Path) -> None:
    """A detect call starting while another call of the model runs takes the one-thread session;
    one starting alone, the session on every thread of the process's share. Same answers."""
    from PIL import Image

    from cmal.inference import OnnxModel

    model = OnnxModel(tiny_exported, threads=1, lone_threads=2)
    assert model.lone_detector is not None
    assert model.lone_detector.get_session_options().intra_op_num_threads == 2
    assert model.detector.get_session_options().intra_op_num_threads == 1
    assert OnnxModel(tiny_exported, threads=2, lone_threads=2).lone_detector is None  # nothing to gain

    used = []
    for name in ("detector", "lone_detector"):
        session = getattr(model, name)
        setattr(model, name, Recording(session, name, used))
    image = Image.new("RGB", (64, 64), (200, 200, 200))
    alone = model.detect([image])
    with model._counted():  # another call (say, fusion on another worker) is running
        beside = model.detect([image])
    assert used == ["lone_detector", "detector"]
    assert model.running == 0
    for field in ("boxes", "scores", "features", "valid"):
        assert getattr(alone, field).shape == getattr(beside, field).shape
    assert (alone.valid == beside.valid).all()
    assert abs(alone.features - beside.features).max() < 1e-4


class Recording:
    """A session that notes its name in ``used`` each time it runs."""

    def __init__(self, session, name: str, used: list[str]):  # type: ignore[no-untyped-def]
        self.session, self.name, self.used = session, name, used

    def run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.used.append(self.name)
        return self.session.run(*args, **kwargs)
