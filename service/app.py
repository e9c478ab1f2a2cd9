"""The FastAPI application: ``create_app()`` with a lifespan that loads, warms up, then reports ready."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import metrics, openapi, tracing
from service.access_log import AccessLog
from service.batcher import Batcher
from service.collector import freeze_startup_heap, thaw
from service.errors import INTERNAL_ERROR, ApiError, error_response
from service.json_tasks import JsonTasks
from service.memory import trim_when_idle
from service.middleware import Admission, BodyLimit, RequestId
from service.routers import health, tasks
from service.runtime import Backend, load_backend, lone_threads, parallelism
from service.settings import Settings
from service.state import ServiceState

log = logging.getLogger("cmal.service")
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}
STATIC = Path(__file__).with_name("static")


def warm_up(backend: Backend, max_batch_size: int) -> None:
    """Run a lone request and the largest batch once each: the first call of a session pays for
    its setup, and the largest batch sizes the runtime's memory arena for every smaller one."""
    image = Image.new("RGB", (backend.files.image_size, backend.files.image_size), (200, 200, 200))
    for n in sorted({1, max_batch_size}):
        backend.fuse(["warm up"] * n, backend.detect([image] * n))


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model loads in the lifespan (``/readyz`` is 503 until it is warm)."""
    settings = settings or Settings()  # type: ignore[call-arg]  # every field has a default
    metrics.initialise()

    state = ServiceState(settings, tracer=tracing.make_tracer(settings.tracing))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers, threads = parallelism(
            settings.backend, settings.workers, settings.threads, settings.processes
        )
        lone = lone_threads(settings.backend, workers, threads, settings.processes)
        backend = await asyncio.to_thread(
            load_backend, settings.model_dir, settings.graphs_dir, settings.backend, settings.variant,
            threads, settings.triton_url, settings.request_timeout_ms / 1000, settings.length_groups, lone,
        )  # fmt: skip
        await asyncio.to_thread(warm_up, backend, settings.max_batch_size)
        frozen = freeze_startup_heap()  # out of every full collection from now on: service.collector
        files = backend.files
        metrics.MODEL_INFO.labels(files.name, files.version, backend.name, backend.provider).set(1)
        batcher = Batcher(
            backend,
            settings.max_batch_size,
            settings.max_batch_delay_ms,
            settings.max_queue,
            settings.cache_size,
            workers,
        )
        batcher.start()
        state.backend, state.batcher = backend, batcher
        trimmer = asyncio.create_task(trim_when_idle(lambda: batcher.depth == 0 and not batcher.in_flight))
        state.ready = True
        metrics.READY.set(1)
        metrics.QUEUE_CAPACITY.set(settings.max_queue)
        log.info(
            "serving %s %s on %s (%s), %d workers x %s threads (a lone detector call: %s), %d start-up "
            "objects frozen", files.name, files.version, backend.name, backend.provider, workers,
            threads or "default", lone or "the same", frozen,
        )  # fmt: skip
        try:
            yield
        finally:
            state.ready = False
            state.draining = True
            metrics.READY.set(0)
            trimmer.cancel()
            await batcher.stop()
            await asyncio.to_thread(backend.close)
            thaw()

    # Swagger UI (/docs) and ReDoc (/redoc) from assets the service serves itself, never a CDN:
    # the docs work on an air-gapped cluster
    app = FastAPIOffline(
        redoc_url=None,  # openapi.install_redoc serves one that fetches nothing from a CDN
        title="CMAL serving",
        version="0.1.0",
        description="Visual entailment, grounding, VQA and image-text matching with a CMAL model.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.include_router(tasks.router)
    app.include_router(health.router)
    openapi.install_redoc(app)
    openapi.install(
        app,
        list(tasks.REQUEST_MODELS),
        bearer=bool(settings.api_key),
        max_chars=settings.max_text_chars,
        max_texts=settings.max_texts,
    )

    # innermost: the HTTP metrics below still see the requests it answers
    app.add_middleware(JsonTasks, state=state)
    registry = metrics.app_registry()
    Instrumentator(registry=registry, excluded_handlers=["/metrics"]).instrument(
        app, latency_lowr_buckets=metrics.LATENCY_BUCKETS, latency_highr_buckets=metrics.LATENCY_BUCKETS
    )

    exposed = metrics.exposed_registry(registry)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(exposed), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    # small Shapes pictures for the page, the README's examples and first tries
    app.mount("/samples", StaticFiles(directory=STATIC / "samples"), name="samples")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        metrics.count_failure(request.url.path, exc.status)
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        metrics.count_failure(request.url.path, 422)
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return error_response(request, 422, "invalid_request", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """The framework's own errors (404 no such path, 405 wrong method) in the one envelope."""
        metrics.count_failure(request.url.path, exc.status_code)
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        """A bug: the detail goes to the log under the request id, never to the client."""
        rid = getattr(request.state, "request_id", None)
        log.error("unhandled error in request %s", rid, exc_info=exc)
        metrics.count_failure(request.url.path, 500)
        return error_response(request, 500, "internal_error", INTERNAL_ERROR)

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Admission, state=state)  # outside the latency histograms: see Admission
    app.add_middleware(RequestId)
    app.add_middleware(AccessLog)  # outermost: it sees the final status and the whole latency
    return app
