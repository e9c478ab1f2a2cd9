"""The service as a real process (uvicorn): readiness, serving, and SIGTERM under load."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cmal.bench.server import free_port
from tests.service.sync import until


def image_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (128, 128), (200, 200, 200)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def launch(model_dir: Path, log_level: str = "error", **env: str) -> tuple[subprocess.Popen[str], str]:
    """The service started as a process (not yet ready), and its URL."""
    port = free_port()
    environment = {**os.environ, "CMAL_MODEL_DIR": str(model_dir), **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", log_level],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def start(model_dir: Path, log_level: str = "error", **env: str) -> tuple[subprocess.Popen[str], str]:
    """The service started as a process, once its /readyz says 200."""
    proc, url = launch(model_dir, log_level, **env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"service exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("service never became ready")


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_drains_in_flight_requests_and_exits_zero(tiny_exported: Path, processes: int) -> None:
    # a long batch delay keeps requests in flight when the signal arrives; with two server
    # processes the parent passes the signal on and each drains its own
    proc, url = start(
        tiny_exported, CMAL_MAX_BATCH_DELAY_MS="3000", CMAL_MAX_BATCH_SIZE="64", CMAL_PROCESSES=str(processes)
    )
    try:
        assert httpx.get(f"{url}/healthz").status_code == 200
        body = {"image": image_b64(), "question": "how many circles are there?"}
        results: list[int] = []

        def call() -> None:
            try:
                results.append(httpx.post(f"{url}/v1/vqa", json=body, timeout=30).status_code)
            except httpx.HTTPError:
                results.append(-1)

        threads = [threading.Thread(target=call) for _ in range(12)]
        for t in threads:
            t.start()
        deadline = time.time() + 10
        while time.time() < deadline and "cmal_queue_depth 12.0" not in httpx.get(f"{url}/metrics").text:
            time.sleep(0.02)  # wait until all 12 are accepted and queued (the batch is still open)
        proc.send_signal(signal.SIGTERM)
        assert wait_not_ready(url)
        for t in threads:
            t.join(timeout=30)
        assert results == [200] * 12  # nothing accepted was lost
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_python_client_against_a_real_process(tiny_exported: Path) -> None:
    from cmal.client import AsyncClient, Client, ServiceError

    proc, url = start(tiny_exported)
    image = Image.new("RGB", (160, 120), (200, 200, 200))
    try:
        with Client(url) as client:
            assert client.ready()
            assert client.models()[0]["backend"] == "onnx"
            assert client.entailment(image, "there is a red circle.")["label"] in (
                "entailment",
                "neutral",
                "contradiction",
            )
            assert "box" in client.grounding(image, "the red circle")
            assert len(client.vqa(image, "how many circles are there?", top_k=2)["top_k"]) == 2
            assert len(client.matching(image, ["a red circle.", "a blue box."])["scores"]) == 2
            with pytest.raises(ServiceError) as err:
                client.vqa(b"not an image", "q?")
            assert err.value.status == 422 and "could not be decoded" in err.value.message

        async def concurrently() -> list[dict[str, object]]:
            async with AsyncClient(url) as c:
                assert await c.ready() and (await c.models())[0]["backend"] == "onnx"
                return await asyncio.gather(
                    c.entailment(image, "there is a red circle."),
                    c.grounding(image, "the red circle"),
                    c.vqa(image, "how many circles are there?", top_k=2),
                    c.matching(image, ["a red circle.", "a blue box."]),
                )

        with Client(url) as client:  # the async client answers as the synchronous one does
            expected = [
                client.entailment(image, "there is a red circle."),
                client.grounding(image, "the red circle"),
                client.vqa(image, "how many circles are there?", top_k=2),
                client.matching(image, ["a red circle.", "a blue box."]),
            ]
        got = asyncio.run(concurrently())
        # the same answers: batched together the texts are padded differently, so numbers agree to
        # a tolerance; decisions are not compared (this untrained model's near-ties may flip)
        assert got[0]["scores"] == pytest.approx(expected[0]["scores"], abs=1e-4)
        assert got[1]["score"] == pytest.approx(expected[1]["score"], abs=1e-4)
        assert got[2]["score"] == pytest.approx(expected[2]["score"], abs=1e-4)
        assert got[3]["scores"] == pytest.approx(expected[3]["scores"], abs=1e-4)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    with Client(url, timeout=5) as gone:  # nothing listens any more: the client's own error
        with pytest.raises(ServiceError) as err:
            gone.models()
        assert err.value.status == 0 and err.value.code == "unreachable"


@pytest.mark.slow
def test_requests_whose_client_left_are_withdrawn_before_running(tiny_exported: Path) -> None:
    # the batch stays open for a minute, so the three requests are still queued when their clients
    # hang up; the service withdraws each as its disconnect arrives (no polling, no timing)
    proc, url = start(tiny_exported, CMAL_MAX_BATCH_DELAY_MS="60000", CMAL_MAX_BATCH_SIZE="64")
    try:
        body = {"image": image_b64(), "question": "q?"}

        def hang_up() -> None:
            with pytest.raises(httpx.TimeoutException):
                httpx.post(f"{url}/v1/vqa", json=body, timeout=0.5)

        threads = [threading.Thread(target=hang_up) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.time() + 60
        while time.time() < deadline and (vqa_count(url, "dropped"), queue_depth(url)) != (3, 0):
            time.sleep(0.05)
        assert (vqa_count(url, "dropped"), queue_depth(url)) == (3, 0)
        assert vqa_count(url, "ok") == 0  # none of them ran
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def wait_not_ready(url: str) -> bool:
    """Poll /readyz until it stops saying 200 (503 while draining, or the listener closed)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 503:
                return True
        except httpx.HTTPError:
            return True
        time.sleep(0.01)
    return False


def scrape(url: str) -> dict[str, float]:
    """``cmal_requests_total`` and ``cmal_queue_depth`` samples, keyed ``name{label=value,…}``."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def vqa_count(url: str, outcome: str) -> float:
    return scrape(url)[f"cmal_requests_total{{outcome={outcome},task=vqa}}"]


def queue_depth(url: str) -> float:
    return scrape(url)["cmal_queue_depth{}"]


@pytest.mark.slow
def test_several_server_processes_answer_and_count_together(tiny_exported: Path) -> None:
    """CMAL_PROCESSES=2: every request answered, and /metrics (whichever process answers it)
    adds up both processes: the requests each counted, and their queue capacities."""
    proc, url = start(tiny_exported, CMAL_PROCESSES="2", CMAL_MAX_QUEUE="100")
    try:
        # /readyz answered by one process; the other may still be loading its model: wait until it
        # has registered (a live process's queue capacity joins the sum)
        both = "cmal_queue_capacity 200.0"
        asyncio.run(until(lambda: both in httpx.get(f"{url}/metrics").text, "the second process"))
        body = {"image": image_b64(), "question": "how many circles are there?"}
        with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=16)) as client:
            with ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(lambda _: client.post("/v1/vqa", json=body).status_code, range(120)))
            bad = client.post("/v1/vqa", json={"image": "!!", "question": "q?"})
            text = client.get("/metrics").text
        assert statuses == [200] * 120 and bad.status_code == 422
        assert vqa_count(url, "ok") == 120 and vqa_count(url, "bad_request") == 1
        assert "cmal_queue_capacity 200.0" in text  # both live processes' queues
        assert "cmal_ready 1.0" in text
        rss = next(
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("process_resident_memory_bytes")
        )
        assert rss > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["ready", "starting"])
def test_server_processes_do_not_outlive_a_killed_parent(tiny_exported: Path, when: str) -> None:
    """Killed once serving, or while its server processes are still starting (before they could
    ask to be told of the parent's death): either way none of them serves on, orphaned."""
    if when == "ready":
        proc, _ = start(tiny_exported, CMAL_PROCESSES="2")
    else:
        proc, _ = launch(tiny_exported, CMAL_PROCESSES="2")
    deadline = time.time() + 60
    children: list[Path] = []
    while time.time() < deadline and len(children) < 2:
        children = [p for p in Path("/proc").glob("[0-9]*") if parent_of(p) == proc.pid]
        time.sleep(0.01)
    assert len(children) >= 2  # the two server processes (and multiprocessing's resource tracker)
    proc.kill()  # no stop signal to pass on
    proc.wait()
    deadline = time.time() + 60
    while time.time() < deadline and any(running(p) for p in children):
        time.sleep(0.1)
    left = [p.name for p in children if running(p)]
    for pid in left:
        os.kill(int(pid), signal.SIGKILL)
    assert left == []  # each drained and exited when its parent died


def parent_of(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def running(proc_dir: Path) -> bool:
    try:
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
