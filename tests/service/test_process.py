"""The service as a real process (uvicorn): readiness, serving, and SIGTERM under load."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (128, 128), (200, 200, 200)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def start(model_dir: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    environment = {**os.environ, "CMAL_MODEL_DIR": str(model_dir), **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "error"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
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
def test_sigterm_drains_in_flight_requests_and_exits_zero(tiny_exported: Path) -> None:
    # a long batch delay keeps requests in flight when the signal arrives
    proc, url = start(tiny_exported, CMAL_MAX_BATCH_DELAY_MS="3000", CMAL_MAX_BATCH_SIZE="64")
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
        time.sleep(0.05)
        try:
            ready = httpx.get(f"{url}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            ready = 503  # already closed the listener: not ready either
        assert ready == 503
        for t in threads:
            t.join(timeout=30)
        assert results == [200] * 12  # nothing accepted was lost
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_python_client_against_a_real_process(tiny_exported: Path) -> None:
    from cmal.client import Client, ServiceError

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
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_requests_whose_client_left_are_dropped_before_running(tiny_exported: Path) -> None:
    proc, url = start(tiny_exported, CMAL_MAX_BATCH_DELAY_MS="1500", CMAL_MAX_BATCH_SIZE="64")
    try:
        body = {"image": image_b64(), "question": "q?"}
        for _ in range(3):
            with pytest.raises(httpx.TimeoutException):
                httpx.post(f"{url}/v1/vqa", json=body, timeout=0.4)  # the client gives up and hangs up
        time.sleep(2.5)  # the batch closes after 1.5 s
        metrics = httpx.get(f"{url}/metrics").text
        dropped = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("cmal_requests_total") and 'outcome="dropped"' in line and 'task="vqa"' in line
        )
        assert dropped == 3
        assert httpx.post(f"{url}/v1/vqa", json=body, timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
