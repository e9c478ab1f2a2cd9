"""The API in front of a real Triton Inference Server (``CMAL_BACKEND=triton``).

The server is the ``tritonserver`` binary that nvidia-pytriton bundles (``make tritonserver``),
serving the CPU test variant that ``cmal export --format triton`` writes (the same ONNX files
behind Triton's Python backend). Checked: the four endpoints answer as the onnx backend does,
Triton batches the API's concurrent calls, and a full Triton queue becomes the API's 429.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cmal import tritonserver
from cmal.bench.server import scrape
from cmal.data.formats import load
from cmal.data.generate import generate_split
from cmal.model_dir import EXPORT_DIR, MANIFEST
from export.triton import TritonSettings, write_python_repository
from service.metrics import OUTCOMES
from tests.service.test_process import start
from tests.tools import missing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    if not tritonserver.binary().is_file():
        missing(f"tritonserver is not installed in {tritonserver.HOME} (run `make tritonserver`)")


def repository(model: Path, out: Path, settings: TritonSettings) -> Path:
    """The model's CPU test repository, written into ``out`` (a copy of its export)."""
    import shutil

    graphs = out / "export"
    shutil.copytree(model / EXPORT_DIR, graphs, ignore=shutil.ignore_patterns("triton*"))
    manifest = json.loads((graphs / MANIFEST).read_text())
    return write_python_repository(graphs, manifest, settings)


@pytest.fixture(scope="module")
def triton(
    demo_exported: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tritonserver.LocalTriton]:
    """Triton with dynamic batching: one instance per model, a 100 ms window to gather a batch."""
    out = tmp_path_factory.mktemp("triton")
    settings = TritonSettings(
        max_batch_size=32, preferred_batch_sizes=(4,), max_queue_delay_us=100_000, cpu_instances=1
    )
    server = tritonserver.start(repository(demo_exported, out, settings), out / "triton.log")
    yield server
    server.stop()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def calls(data: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """Every example of a Shapes split as (task, path, body)."""
    images: dict[Path, str] = {}

    def image(path: Path) -> str:
        if path not in images:
            images[path] = base64.b64encode(path.read_bytes()).decode()
        return images[path]

    out = [
        ("ve", "/v1/entailment", {"image": image(r.image), "hypothesis": r.hypothesis})
        for r in load(data / "ve.jsonl", "ve")
    ]
    out += [
        ("rec", "/v1/grounding", {"image": image(r.image), "expression": r.expression})
        for r in load(data / "rec.jsonl", "rec")
    ]
    out += [
        ("vqa", "/v1/vqa", {"image": image(r.image), "question": r.question})
        for r in load(data / "vqa.jsonl", "vqa")
    ]
    out += [
        ("itm", "/v1/matching", {"image": image(r.image), "texts": [r.text]})
        for r in load(data / "itm.jsonl", "itm")
    ]
    return out


def send(url: str, requests: list[tuple[str, str, dict[str, Any]]], clients: int) -> list[httpx.Response]:
    """Every request, from ``clients`` concurrent clients; the responses in request order."""
    limits = httpx.Limits(max_connections=clients)
    with (
        httpx.Client(base_url=url, timeout=300, limits=limits) as client,
        ThreadPoolExecutor(clients) as pool,
    ):
        return list(pool.map(lambda c: client.post(c[1], json=c[2]), requests))


def decision(task: str, body: dict[str, Any]) -> tuple[Any, list[float]]:
    """An answer's decision and its scores."""
    if task == "ve":
        return body["label"], list(body["scores"].values())
    if task == "rec":
        return body["box"], [body["score"]]
    if task == "vqa":
        return body["answer"], [a["score"] for a in body["top_k"]]
    return [s > 0.5 for s in body["scores"]], body["scores"]


def samples(text: str, name: str) -> dict[str, float]:
    """Counter ``name``'s value per ``model`` label in Prometheus text (the parser names a
    counter's samples ``<name>_total``)."""
    return {
        s.labels["model"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if family.name == name and s.name == f"{name}_total"
    }


def test_answers_match_the_onnx_backend_and_triton_batches(
    demo_exported: Path, triton: tritonserver.LocalTriton, tmp_path: Path
) -> None:
    data = tmp_path / "fresh"
    generate_split(data, seed=8181, num_images=40, split="test", progress=False)
    requests = calls(data)
    api, url = start(demo_exported, CMAL_BACKEND="triton", CMAL_TRITON_URL=triton.grpc_url, CMAL_WORKERS="4")
    try:
        before = triton.metrics()
        via_triton = send(url, requests, clients=32)
        after = triton.metrics()
    finally:
        stop(api)
    onnx, url = start(demo_exported, CMAL_BACKEND="onnx")
    try:
        via_onnx = send(url, requests, clients=8)
    finally:
        stop(onnx)

    assert [r.status_code for r in via_triton] == [200] * len(requests)
    assert [r.status_code for r in via_onnx] == [200] * len(requests)
    for (task, _, _), a, b in zip(requests, via_triton, via_onnx, strict=True):
        (label_a, scores_a), (label_b, scores_b) = decision(task, a.json()), decision(task, b.json())
        assert label_a == label_b, (task, label_a, label_b)
        assert max(abs(x - y) for x, y in zip(scores_a, scores_b, strict=True)) <= 1e-4, task

    count, executions = (
        {m: samples(after, name)[m] - samples(before, name).get(m, 0) for m in ("detector", "fusion")}
        for name in ("nv_inference_count", "nv_inference_exec_count")
    )
    print(f"Triton rows {count}, model executions {executions}")
    for model in ("detector", "fusion"):
        assert count[model] > 0
        assert executions[model] < count[model], model  # rows from several calls ran together


def test_a_full_triton_queue_is_the_apis_429_and_nothing_is_lost(demo_exported: Path, tmp_path: Path) -> None:
    # one instance, no batching, one queued request: 16 API workers calling at once overflow it
    settings = TritonSettings(max_batch_size=1, preferred_batch_sizes=(), max_queue_size=1, cpu_instances=1)
    server = tritonserver.start(repository(demo_exported, tmp_path, settings), tmp_path / "triton.log")
    data = tmp_path / "fresh"
    generate_split(data, seed=8282, num_images=20, split="test", progress=False)
    requests = [c for c in calls(data) if c[0] == "vqa"][:160]
    api, url = start(
        demo_exported, CMAL_BACKEND="triton", CMAL_TRITON_URL=server.grpc_url, CMAL_WORKERS="16",
        CMAL_MAX_BATCH_SIZE="1", CMAL_CACHE_SIZE="0", CMAL_MAX_QUEUE="1000",
    )  # fmt: skip
    try:
        responses = send(url, requests, clients=64)
        counted = {k: v for k, v in scrape(int(url.rsplit(":", 1)[1])).items() if k in OUTCOMES}
    finally:
        stop(api)
        server.stop()
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    rejected = [r for r in responses if r.status_code == 429]
    assert rejected, "Triton never rejected a call: the overload did not happen"
    for r in rejected:
        assert r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "queue_full"
    assert all("answer" in r.json() for r in responses if r.status_code == 200)
    assert statuses.count(200) > 0
    assert sum(counted.values()) == len(requests)  # the API counted every request it answered
    print(f"{statuses.count(200)} answered, {len(rejected)} rejected by Triton's full queue, {counted}")


def test_the_triton_backend_never_imports_torch() -> None:
    code = "import sys, service.triton_backend, service.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_triton_panel_and_api_panel_has_data(
    demo_exported: Path, triton: tritonserver.LocalTriton, tmp_path: Path
) -> None:
    """Both dashboards against a real Prometheus scraping the API (CMAL_BACKEND=triton) and Triton
    with the repo's scrape config."""
    from tests.integration.test_dashboard import panels_with_data, prometheus

    api, url = start(demo_exported, CMAL_BACKEND="triton", CMAL_TRITON_URL=triton.grpc_url)
    try:
        with prometheus(url, tmp_path, triton_metrics=f"127.0.0.1:{triton.metrics_port}") as prom:
            assert panels_with_data(prom, url, "triton")
            assert panels_with_data(prom, url, "cmal")
    finally:
        stop(api)


def test_cmal_bench_measures_the_triton_backend_beside_onnx(tiny_exported: Path, tmp_path: Path) -> None:
    import shutil

    from tests.integration.test_bench import tiny_bench

    model = tmp_path / "tiny-model"
    shutil.copytree(tiny_exported, model)  # the bench writes the Triton repository into its export
    out = tmp_path / "bench"
    report = tiny_bench(model, "onnx,triton", out)
    assert [p["batch_size"] for p in report["engine"]["triton"]] == [1, 2]
    (point,) = report["service"]["triton"]["closed_loop"]
    assert point["concurrency"] == 1 and point["status"] == {"200": point["requests"]}
    # each backend's service against its own engine, from the same run
    for name in ("onnx", "triton"):
        assert report["ratios"][f"{name}_c1_vs_own_engine_b1"] > 0, name
    assert "ready" in (out / "triton.log").read_text(errors="replace").lower()
