"""Optional OpenTelemetry tracing: a request's server span continues the caller's trace and has
its decode, queue, detector and fusion stages as children; off by default, no spans at all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing
from service.app import create_app
from service.settings import Settings
from tests.service.test_api import b64, png

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def send(settings: Settings, exporter: InMemorySpanExporter | None) -> httpx.Response:
    async def go() -> httpx.Response:
        app = create_app(settings)
        if exporter is not None:
            app.state.service.tracer = tracing.make_tracer("off", exporter=exporter)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                body = {"image": b64(png()), "question": "how many?"}
                return await client.post("/v1/vqa", json=body, headers={"traceparent": TRACEPARENT})

    return asyncio.run(go())


def test_a_request_span_continues_the_callers_trace_with_its_stages(tiny_exported: Path) -> None:
    exporter = InMemorySpanExporter()
    assert send(Settings(model_dir=tiny_exported), exporter).status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST /v1/vqa", "decode", "queue", "detector", "fusion"}
    request = spans["POST /v1/vqa"]
    assert format(request.context.trace_id, "032x") == TRACE_ID  # the caller's trace
    assert format(request.parent.span_id, "016x") == "00f067aa0ba902b7"
    for stage in ("decode", "queue", "detector", "fusion"):
        span = spans[stage]
        assert (
            span.parent.span_id == request.context.span_id
            and span.context.trace_id == request.context.trace_id
        )
        assert request.start_time <= span.start_time <= span.end_time <= request.end_time, stage
    assert spans["decode"].end_time <= spans["queue"].start_time + 10**6  # decode, then queue (1 ms slack)
    assert spans["fusion"].attributes["cmal.batch_rows"] >= 1


def test_tracing_is_off_by_default(tiny_exported: Path) -> None:
    settings = Settings(model_dir=tiny_exported)
    assert settings.tracing == "off" and tracing.make_tracer(settings.tracing) is None
    assert send(settings, None).status_code == 200
