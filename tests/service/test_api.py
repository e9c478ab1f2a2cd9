"""The service in-process (httpx ASGITransport): endpoints, contract, errors and limits."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.app import create_app
from service.runtime import BackendOverloaded, BackendTimeout, BackendUnavailable
from service.settings import Settings
from tests.service.sync import Gate, until


def png(size: tuple[int, int] = (128, 128), colour: tuple[int, int, int] = (210, 210, 210)) -> bytes:
    image = Image.new("RGB", size, colour)
    image.paste((220, 30, 30), (20, 20, 50, 50))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def with_client(settings: Settings, fn):  # type: ignore[no-untyped-def]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await fn(client, app)


@pytest.fixture
def settings(tiny_exported: Path) -> Settings:
    # one worker: the tests hold it with a Gate to make a queue form
    return Settings(model_dir=tiny_exported, max_batch_size=8, max_batch_delay_ms=2, workers=1)


def run(settings: Settings, fn):  # type: ignore[no-untyped-def]
    return asyncio.run(with_client(settings, fn))


def test_four_endpoints_follow_the_contract(settings: Settings) -> None:
    image = b64(png())

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        r = await client.post("/v1/entailment", json={"image": image, "hypothesis": "there is a red box."})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["label"] in ("entailment", "neutral", "contradiction")
        assert set(body["scores"]) == {"entailment", "neutral", "contradiction"}
        assert abs(sum(body["scores"].values()) - 1) < 1e-6
        assert r.headers["x-request-id"] == body["request_id"] and len(body["model_version"]) == 12

        big = b64(png((512, 256)))
        r = await client.post("/v1/grounding", json={"image": big, "expression": "the red square"})
        assert r.status_code == 200, r.text
        box = r.json()["box"]
        if box is not None:  # pixels of the original 512x256 image
            assert 0 <= box[0] < box[2] <= 512 and 0 <= box[1] < box[3] <= 256

        r = await client.post(
            "/v1/vqa", json={"image": image, "question": "what colour is the box?", "top_k": 3}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["top_k"]) == 3 and body["answer"] == body["top_k"][0]["answer"]
        assert body["answer"] in app.state.service.backend.files.vocab.answers

        r = await client.post(
            "/v1/matching", json={"image": image, "texts": ["a red box.", "a blue circle.", "x"]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["scores"]) == 3 and all(0 <= s <= 1 for s in body["scores"])
        assert body["best"] == max(range(3), key=lambda i: body["scores"][i])

        r = await client.post(
            "/v1/vqa",
            files={"image": ("a.png", png(), "image/png")},
            data={"question": "how many boxes are there?"},
        )
        assert r.status_code == 200, r.text

        r = await client.get("/v1/models")
        info = r.json()[0]
        assert info["backend"] == "onnx" and info["execution_provider"] == "CPUExecutionProvider"
        assert info["tasks"] == ["entailment", "grounding", "vqa", "matching"]
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        metrics = (await client.get("/metrics")).text
        names = ("cmal_requests_total", "cmal_batch_size_bucket", "cmal_queue_wait_seconds")
        names += ("cmal_inference_seconds", "cmal_queue_depth", "cmal_model_info", "http_requests_total")
        for name in names:
            assert name in metrics, name
        assert 'stage="detector"' in metrics and 'stage="fusion"' in metrics
        docs = (await client.get("/openapi.json")).json()
        assert "multipart/form-data" in docs["paths"]["/v1/vqa"]["post"]["requestBody"]["content"]
        assert (await client.get("/")).status_code == 200

    run(settings, go)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/vqa", {"image": "not base64!", "question": "q?"}, 422, "not valid base64"),
        ("/v1/vqa", {"image": b64(b"hello world"), "question": "q?"}, 422, "could not be decoded"),
        ("/v1/vqa", {"image": b64(png()[:60]), "question": "q?"}, 422, "could not be decoded"),
        ("/v1/vqa", {"image": b64(png()), "question": ""}, 422, "must not be empty"),
        ("/v1/vqa", {"image": b64(png()), "question": "x" * 301}, 422, "the limit is 300"),
        ("/v1/vqa", {"image": b64(png()), "question": 5}, 422, "question"),
        ("/v1/vqa", {"image": b64(png())}, 422, "question: Field required"),
        ("/v1/vqa", {"image": b64(png()), "question": "q?", "extra": 1}, 422, "extra"),
        ("/v1/matching", {"image": b64(png()), "texts": []}, 422, "texts"),
        ("/v1/matching", {"image": b64(png()), "texts": ["a"] * 33}, 422, "the limit is 32"),
        ("/v1/entailment", [1, 2], 422, "Input should be a valid dictionary"),
    ],
)
def test_bad_inputs_get_clear_4xx(
    settings: Settings, path: str, body: object, status: int, message: str
) -> None:
    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        r = await client.post(path, json=body)
        assert r.status_code == status, r.text
        assert message in r.json()["error"]["message"]
        assert r.json()["request_id"]

    run(settings, go)


def test_limits(tiny_exported: Path) -> None:
    settings = Settings(
        model_dir=tiny_exported, max_body_bytes=200_000, max_image_bytes=50_000, max_image_pixels=300 * 300
    )

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        r = await client.post(
            "/v1/vqa", content=b"{" + b" " * 300_000 + b"}", headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and "exceeds" in r.json()["error"]["message"]
        r = await client.post("/v1/vqa", json={"image": b64(png((400, 400))), "question": "q?"})
        assert r.status_code == 413 and "pixels" in r.json()["error"]["message"]
        noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))
        buf = io.BytesIO()
        noisy.save(buf, "PNG")
        r = await client.post("/v1/vqa", json={"image": b64(buf.getvalue()), "question": "q?"})
        assert r.status_code == 413 and "bytes" in r.json()["error"]["message"]
        buf = io.BytesIO()
        Image.new("RGB", (10, 10)).save(buf, "TIFF")
        r = await client.post("/v1/vqa", json={"image": b64(buf.getvalue()), "question": "q?"})
        assert r.status_code == 422 and "unsupported image format TIFF" in r.json()["error"]["message"]
        r = await client.post("/v1/vqa", content=b"question=x", headers={"content-type": "text/plain"})
        assert r.status_code == 415

    run(settings, go)


def test_api_key(tiny_exported: Path) -> None:
    settings = Settings(model_dir=tiny_exported, api_key="s3cret")

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        body = {"image": b64(png()), "question": "q?"}
        assert (await client.post("/v1/vqa", json=body)).status_code == 401
        assert (
            await client.post("/v1/vqa", json=body, headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        assert (
            await client.post("/v1/vqa", json=body, headers={"Authorization": "Bearer s3cret"})
        ).status_code == 200
        assert (await client.get("/v1/models")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200

    run(settings, go)


def test_queued_requests_form_batches_and_share_detection(settings: Settings) -> None:
    image = b64(png())

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        backend = app.state.service.backend
        calls = {"detect": 0}
        original = backend.detect

        def counting(images):  # type: ignore[no-untyped-def]
            calls["detect"] += len(images)
            return original(images)

        backend.detect = counting
        before = (await client.get("/metrics")).text  # counters are process-wide: compare deltas
        gate = Gate(backend)
        first = asyncio.create_task(client.post("/v1/vqa", json={"image": image, "question": "q?"}))
        await gate.wait_entered()  # the worker is busy with the first request
        rest = [
            asyncio.create_task(client.post("/v1/vqa", json={"image": image, "question": f"q {i}?"}))
            for i in range(20)
        ]
        await until(lambda: app.state.service.batcher.depth == 20, "20 queued requests")
        gate.open()
        rs = [await first, *await asyncio.gather(*rest)]
        assert [r.status_code for r in rs] == [200] * 21
        assert calls["detect"] == 1  # one image, detected once, then served from the cache
        # 20 requests were waiting when the worker came free: batches of max_batch_size (8)
        assert gate.calls == 1 + 3
        after = (await client.get("/metrics")).text
        assert change(before, after, "cmal_batch_size_count") == 4
        assert change(before, after, "cmal_batch_size_sum") == 21
        assert change(before, after, 'cmal_detector_cache_total{result="miss"}') == 1
        assert change(before, after, 'cmal_detector_cache_total{result="hit"}') == 20

    run(settings, go)


def test_full_queue_rejects_with_retry_after_and_keeps_accepted(tiny_exported: Path) -> None:
    settings = Settings(
        model_dir=tiny_exported, max_queue=4, max_batch_size=2, max_batch_delay_ms=20, workers=1
    )
    image = b64(png())

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        before = (await client.get("/metrics")).text
        gate = Gate(app.state.service.backend)

        def ask(i: int) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(client.post("/v1/vqa", json={"image": image, "question": f"q {i}?"}))

        running = ask(0)
        await gate.wait_entered()
        queued = [ask(i) for i in range(1, 5)]
        await until(lambda: app.state.service.batcher.depth == 4, "a full queue")
        rejected = await client.post("/v1/vqa", json={"image": image, "question": "one too many?"})
        assert rejected.status_code == 429 and rejected.headers["retry-after"] == "1"
        assert rejected.json()["error"]["code"] == "queue_full"
        assert rejected.json()["request_id"] == rejected.headers["x-request-id"]
        # turned away before its body is read: even a malformed one gets the 429, not a 422
        unread = await client.post("/v1/vqa", content=b"{not json", headers={"X-Request-ID": "r-1"})
        assert unread.status_code == 429 and unread.json()["request_id"] == "r-1"
        assert (await client.get("/readyz")).status_code == 200  # only task requests are refused
        gate.open()
        accepted = [await running, *await asyncio.gather(*queued)]
        assert [r.status_code for r in accepted] == [200] * 5  # nothing accepted was lost
        after = (await client.get("/metrics")).text
        assert change(before, after, 'cmal_requests_total{task="vqa",outcome="ok"}') == 5
        assert change(before, after, 'cmal_requests_total{task="vqa",outcome="rejected"}') == 2

    run(settings, go)


def test_deadline_and_failing_batch(tiny_exported: Path) -> None:
    settings = Settings(model_dir=tiny_exported, request_timeout_ms=200)
    image = b64(png())

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        backend = app.state.service.backend
        original = backend.fuse
        before = (await client.get("/metrics")).text
        gate = Gate(backend)  # the batch is held until after its deadline has passed
        r = await client.post("/v1/vqa", json={"image": image, "question": "q?"})
        assert r.status_code == 504 and "no result within" in r.json()["error"]["message"]
        gate.open()
        await until(lambda: app.state.service.batcher.in_flight == 0, "the held batch to finish")

        def broken(texts, regions):  # type: ignore[no-untyped-def]
            raise RuntimeError("injected fault")

        backend.fuse = broken
        r = await client.post("/v1/vqa", json={"image": image, "question": "q?"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "inference_failed"
        assert "injected" not in r.text and "RuntimeError" not in r.text  # internals stay in the log
        backend.fuse = original
        r = await client.post("/v1/vqa", json={"image": image, "question": "q?"})
        assert r.status_code == 200  # the server keeps serving
        after = (await client.get("/metrics")).text
        for outcome, count in (("timeout", 1), ("error", 1), ("ok", 1), ("dropped", 0)):
            assert change(before, after, f'cmal_requests_total{{task="vqa",outcome="{outcome}"}}') == count

    run(settings, go)


def test_a_cache_smaller_than_a_batch_serves_every_image(tiny_exported: Path) -> None:
    settings = Settings(model_dir=tiny_exported, cache_size=2, max_batch_size=8, workers=1)
    a, b, c, d = (b64(png(colour=(10 + 60 * i, 200, 200))) for i in range(4))

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        def ask(image: str) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(client.post("/v1/vqa", json={"image": image, "question": "q?"}))

        assert (await ask(a)).status_code == 200  # cached: [a]
        gate = Gate(app.state.service.backend)
        held = ask(d)  # cached: [a, d]; the worker waits inside fusion
        await gate.wait_entered()
        batch = [ask(a), ask(b), ask(c)]  # a hit, then b and c evict a and d
        await until(lambda: app.state.service.batcher.depth == 3, "three queued images")
        gate.open()
        rs = [await held, *await asyncio.gather(*batch)]
        assert [r.status_code for r in rs] == [200] * 4, [r.text for r in rs]

    run(settings, go)


def sample(metrics: str, name: str) -> float:
    """The value of one sample of a Prometheus text exposition, named as ``metric{label="v",…}``
    (labels in any order)."""
    from prometheus_client.parser import text_string_to_metric_families

    metric, _, labels = name.partition("{")
    wanted = dict(kv.split("=", 1) for kv in labels.rstrip("}").split(",")) if labels else {}
    wanted = {k: v.strip('"') for k, v in wanted.items()}
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == metric and s.labels == wanted:
                return float(s.value)
    raise AssertionError(f"no sample {name}")


def change(before: str, after: str, name: str) -> float:
    """How much a sample grew between two scrapes (the metrics registry is process-wide)."""
    return sample(after, name) - sample(before, name)


@pytest.mark.parametrize("backend", ["torchscript", "torch"])
def test_torch_backends_serve_the_same_answers(tiny_exported: Path, backend: str) -> None:
    image = b64(png())
    body = {"image": image, "texts": ["a red box.", "there is no circle.", "two crosses."]}

    async def scores(client: httpx.AsyncClient, app) -> list[float]:  # type: ignore[no-untyped-def]
        r = await client.post("/v1/matching", json=body)
        assert r.status_code == 200, r.text
        info = (await client.get("/v1/models")).json()[0]
        assert info["backend"] == app.state.service.settings.backend
        return list(r.json()["scores"])

    onnx = run(Settings(model_dir=tiny_exported), scores)
    other = run(Settings(model_dir=tiny_exported, backend=backend), scores)
    assert np.allclose(onnx, other, atol=1e-4)


def test_onnx_service_path_never_imports_torch(tiny_exported: Path) -> None:
    import subprocess
    import sys

    script = f"""
import asyncio, base64, io, sys
import httpx
from PIL import Image
from service.app import create_app
from service.settings import Settings

async def main():
    app = create_app(Settings(model_dir={str(tiny_exported)!r}))
    async with app.router.lifespan_context(app):
        buf = io.BytesIO(); Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, "PNG")
        body = {{"image": base64.b64encode(buf.getvalue()).decode(), "question": "q?"}}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.post("/v1/vqa", json=body)).status_code == 200
    print("TORCH", "torch" in sys.modules)

asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH False" in result.stdout


def test_every_failure_answers_in_the_one_envelope(
    tiny_exported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(model_dir=tiny_exported, max_body_bytes=1000)

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        def envelope(r: httpx.Response, status: int, code: str) -> dict[str, object]:
            assert r.status_code == status, r.text
            body = r.json()
            assert set(body) == {"error", "request_id"} and body["error"]["code"] == code
            assert body["request_id"] == r.headers["x-request-id"]
            return body

        envelope(await client.get("/v1/nothing-here"), 404, "not_found")
        wrong = await client.get("/v1/vqa")
        envelope(wrong, 405, "method_not_allowed")
        assert wrong.headers["allow"] == "POST"
        envelope(await client.post("/v1/vqa", content=b"{not json"), 400, "invalid_json")
        envelope(await client.post("/v1/vqa", content=b"x" * 2000), 413, "body_too_large")

        def bug(texts, regions):  # type: ignore[no-untyped-def]
            raise KeyError("a secret internal detail")

        app.state.service.backend.fuse = bug
        with caplog.at_level("ERROR", logger="cmal.service"):
            failed = await client.post("/v1/vqa", json={"image": b64(png()), "question": "q?"})
        body = envelope(failed, 500, "inference_failed")
        assert "secret" not in failed.text and "KeyError" not in failed.text
        assert any(
            str(body["request_id"]) in r.getMessage() and "secret" in r.getMessage() for r in caplog.records
        )

    run(settings, go)


def test_a_bug_answers_500_without_internals(
    tiny_exported: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from service.routers import tasks

    def bug(*args):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("a secret internal detail")

    monkeypatch.setattr(tasks, "vqa_result", bug)  # fails after inference, while building the answer

    async def go() -> httpx.Response:
        app = create_app(Settings(model_dir=tiny_exported))
        async with app.router.lifespan_context(app):
            # the server re-raises a bug after answering it (for its log): keep the answer
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post("/v1/vqa", json={"image": b64(png()), "question": "q?"})

    with caplog.at_level("ERROR", logger="cmal.service"):
        r = asyncio.run(go())
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "secret" not in r.text and "ZeroDivisionError" not in r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert any("secret" in (rec.exc_text or str(rec.exc_info)) for rec in caplog.records)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BackendOverloaded("Exceeds maximum queue size"), 429, "queue_full"),
        (BackendTimeout("Deadline Exceeded"), 504, "deadline_exceeded"),
        (BackendUnavailable("failed to connect to all addresses"), 503, "backend_unavailable"),
    ],
)
def test_a_remote_backends_refusals_keep_their_meaning(
    tiny_exported: Path, error: Exception, status: int, code: str
) -> None:
    """What a remote inference server (Triton) says about a batch reaches the client as the
    service's own 429 / 504 / 503, never as a 500."""
    settings = Settings(model_dir=tiny_exported, workers=1)
    image = b64(png())

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        backend = app.state.service.backend
        original = backend.detect

        def refuse(images):  # type: ignore[no-untyped-def]
            raise error

        backend.detect = refuse
        before = (await client.get("/metrics")).text
        r = await client.post("/v1/vqa", json={"image": image, "question": "q?"})
        assert r.status_code == status and r.json()["error"]["code"] == code
        if status in (429, 503):
            assert r.headers["retry-after"] == "1"
        assert str(error) not in r.text  # the server's words stay in the log
        backend.detect = original
        assert (await client.post("/v1/vqa", json={"image": image, "question": "q?"})).status_code == 200
        after = (await client.get("/metrics")).text
        outcome = {429: "rejected", 504: "timeout", 503: "error"}[status]
        assert change(before, after, f'cmal_requests_total{{task="vqa",outcome="{outcome}"}}') == 1

    run(settings, go)


@pytest.mark.parametrize("threshold", [None, -1e9, 1e9])
def test_grounding_declines_below_the_models_threshold(
    tiny_exported: Path, tmp_path: Path, threshold: float | None
) -> None:
    # the tiny model with a decline threshold in its labels.json: never (None, -1e9) or always (1e9)
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_exported, model)
    labels = json.loads((model / "labels.json").read_text())
    (model / "labels.json").write_text(json.dumps({**labels, "grounding_decline_below": threshold}))
    settings = Settings(model_dir=model, max_batch_size=8, max_batch_delay_ms=2, workers=1)
    image, expression = b64(png()), "the red square"

    async def go(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
        r = await client.post("/v1/grounding", json={"image": image, "expression": expression})
        assert r.status_code == 200, r.text
        body = r.json()
        matched = await client.post("/v1/matching", json={"image": image, "texts": [expression]})
        # `match` is the image-text matching probability of the expression itself
        assert body["match"] == pytest.approx(matched.json()["scores"][0], abs=1e-5)
        if threshold is not None and threshold > 0:
            assert body["box"] is None and body["score"] == 0.0
        else:
            assert body["box"] is not None and 0 < body["score"] <= 1

    run(settings, go)
