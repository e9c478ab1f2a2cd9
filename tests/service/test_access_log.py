"""One JSON access-log line per request, tied to its id, with W3C trace context passed through."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

import httpx
import pytest

from service.access_log import JsonFormatter
from service.app import create_app
from service.settings import Settings
from tests.service.test_api import b64, png
from tests.service.test_process import start

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def lines_for(records: list[logging.LogRecord], rid: str) -> list[dict[str, object]]:
    entries = [json.loads(JsonFormatter().format(r)) for r in records if r.name == "cmal.access"]
    return [e for e in entries if e.get("request_id") == rid]


def test_each_request_gets_one_line_with_its_outcome(
    tiny_exported: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> list[httpx.Response]:
        app = create_app(Settings(model_dir=tiny_exported))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                ok = await client.post(
                    "/v1/vqa",
                    json={"image": b64(png()), "question": "how many?"},
                    headers={"X-Request-ID": "ok-1", "traceparent": TRACE},
                )
                bad = await client.post("/v1/vqa", content=b"{oops", headers={"X-Request-ID": "bad-1"})
                return [ok, bad]

    with caplog.at_level("INFO", logger="cmal.access"):
        ok, bad = asyncio.run(go())
    assert ok.status_code == 200 and ok.headers["traceparent"] == TRACE  # propagated
    (line,) = lines_for(caplog.records, "ok-1")
    assert line["status"] == 200 and line["task"] == "vqa" and line["method"] == "POST"
    assert (
        float(line["latency_ms"]) > 0 and int(line["batch_rows"]) >= 1 and float(line["queue_wait_ms"]) >= 0
    )
    assert line["trace_id"] == TRACE.split("-")[1]
    (line,) = lines_for(caplog.records, "bad-1")
    assert line["status"] == 400 and line["error_code"] == "invalid_json" and "trace_id" not in line
    assert "traceparent" not in bad.headers


def test_a_malformed_traceparent_is_ignored(tiny_exported: Path) -> None:
    async def go() -> httpx.Response:
        app = create_app(Settings(model_dir=tiny_exported))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/healthz", headers={"traceparent": "00-not-a-trace"})

    assert "traceparent" not in asyncio.run(go()).headers


@pytest.mark.slow
def test_the_process_logs_json_only_and_one_line_per_request(tiny_exported: Path) -> None:
    proc, url = start(tiny_exported, log_level="info")  # info: the access lines are written
    try:
        body = {"image": b64(png()), "question": "how many?"}
        r = httpx.post(f"{url}/v1/vqa", json=body, headers={"X-Request-ID": "proc-1"}, timeout=60)
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    mine = [e for e in lines if e.get("request_id") == "proc-1"]
    assert len(mine) == 1 and mine[0]["status"] == 200 and mine[0]["logger"] == "cmal.access"
    assert any(e["logger"].startswith("uvicorn") for e in lines)  # the server's own lines, same format
