"""The four task endpoints. Each accepts JSON (base64 image) or multipart/form-data (file upload)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from cmal.inference import entailment_result, grounding_result, sigmoid, vqa_result
from service import metrics, tracing
from service.batcher import (
    Batcher,
    BatchFailed,
    ClientGone,
    DeadlineExceeded,
    Job,
    JobResult,
    QueueFull,
    Unavailable,
)
from service.errors import ApiError
from service.images import ImageError, content_hash, decode_base64, probe_image
from service.metrics import CLIENT_CLOSED_REQUEST
from service.middleware import QUEUE_FULL
from service.openapi import TASK_ERRORS, error_responses, request_body
from service.schemas import (
    TEXT_PATTERN,
    EntailmentRequest,
    EntailmentResponse,
    GroundingRequest,
    GroundingResponse,
    MatchingRequest,
    MatchingResponse,
    VqaRequest,
    VqaResponse,
)
from service.security import require_api_key
from service.settings import Settings
from service.state import ServiceState, State

log = logging.getLogger("cmal.service")
INFERENCE_FAILED = "inference failed; the service log has the details under this request id"
BACKEND_UNAVAILABLE = "the inference server cannot be reached; retry shortly"
ERRORS = error_responses(TASK_ERRORS)
NON_BLANK = re.compile(TEXT_PATTERN)
JSON_MEDIA_TYPES = ("application/json", "")  # no Content-Type: read as JSON
REQUEST_MODELS = (EntailmentRequest, GroundingRequest, VqaRequest, MatchingRequest)  # for the OpenAPI
router = APIRouter(prefix="/v1", tags=["tasks"], dependencies=[Depends(require_api_key)])
M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[..., Awaitable[dict[str, Any]]]


def task_route(
    route: str, request_model: type[BaseModel], response_model: type[BaseModel]
) -> Callable[[Endpoint], Endpoint]:
    """``POST /v1/<route>``, documented with its request body (JSON or multipart), its answer and
    every error it can give."""
    return router.post(
        f"/{route}",
        response_model=response_model,
        responses=ERRORS,
        openapi_extra=request_body(request_model),
    )


def _queue_full() -> ApiError:
    return ApiError(429, *QUEUE_FULL, {"Retry-After": "1"})


def _client_gone() -> ApiError:
    """Nobody is left to read the answer; it is still counted (outcome "dropped")."""
    return ApiError(CLIENT_CLOSED_REQUEST, "client_closed_request", "the client hung up")


async def _parse(request: Request, model: type[M]) -> tuple[M, bytes]:
    """Validate the body (JSON or multipart) into ``model``; return it with the raw image bytes."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "multipart/form-data":
            form = await request.form()
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "invalid_request", "multipart field 'image' must be a file upload")
            raw = await upload.read()
            fields: dict[str, Any] = {}
            for key in form:
                if key == "image":
                    continue
                values = form.getlist(key)
                fields[key] = values if key == "texts" else values[0]
            parsed = model.model_validate({**fields, "image": "upload"})
            return parsed, raw
        if ctype not in JSON_MEDIA_TYPES:
            raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
        body = await request.body()
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
        parsed = model.model_validate(data)
        return parsed, decode_base64(parsed.image)  # type: ignore[attr-defined]
    except ValidationError as e:
        details = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors())
        raise ApiError(422, "invalid_request", details) from None
    except ImageError as e:
        raise ApiError(e.status, "invalid_image", e.message) from None
    except ClientDisconnect:
        raise _client_gone() from None


def _check_texts(settings: Settings, texts: list[str], field: str) -> list[str]:
    """The texts, or 422 for an empty or overlong one."""
    out = []
    for t in texts:
        if not NON_BLANK.search(t):
            raise ApiError(422, "invalid_text", f"'{field}' must not be empty")
        if len(t) > settings.max_text_chars:
            raise ApiError(
                422,
                "invalid_text",
                f"'{field}' is {len(t)} characters; the limit is {settings.max_text_chars}",
            )
        out.append(t)
    return out


async def _run(request: Request, state: ServiceState, task: str, raw: bytes, texts: list[str]) -> JobResult:
    """Decode the image, queue the job, and wait for its result within the deadline (traced as
    one server span with its stages when ``CMAL_TRACING`` is on)."""
    attributes = {"cmal.task": task, "cmal.request_id": request.state.request_id}
    with tracing.request_span(state.tracer, f"POST /v1/{task}", request.headers, attributes) as span:
        decode_start = time.time_ns()
        result, decode_end = await _infer(request, state, task, raw, texts)
        if span is not None:
            stages = {"decode": (decode_start, decode_end), **result.stages}
            tracing.record_stages(state.tracer, span, stages, result.batch_rows)
    request.state.batch_rows = result.batch_rows  # for the request's access-log line
    request.state.queue_wait_ms = round(1000 * result.queue_wait_s, 2)
    return result


async def _infer(
    request: Request, state: ServiceState, task: str, raw: bytes, texts: list[str]
) -> tuple[JobResult, int]:
    """The result, and when decoding ended (epoch ns)."""
    settings = state.settings
    _, batcher = state.serving()
    try:  # the header only: the inference worker decodes the pixels, off the event loop
        image = probe_image(raw, settings.max_image_bytes, settings.max_image_pixels, settings.min_image_side)
    except ImageError as e:
        raise ApiError(e.status, "invalid_image", e.message) from None
    decoded = time.time_ns()
    try:
        job = await batcher.submit(task, content_hash(raw), image, texts, settings.request_timeout_ms / 1000)
    except QueueFull:
        raise _queue_full() from None
    watcher = asyncio.create_task(_withdraw_on_disconnect(request, job, batcher))
    try:
        remaining = max(0.0, job.deadline - time.perf_counter())
        result: JobResult = await asyncio.wait_for(asyncio.shield(job.future), timeout=remaining)
    except (TimeoutError, DeadlineExceeded):
        batcher.withdraw(job)  # nobody waits for it any more
        raise ApiError(
            504, "deadline_exceeded", f"no result within {settings.request_timeout_ms:.0f} ms"
        ) from None
    except ClientGone:
        raise _client_gone() from None
    except QueueFull:  # accepted here, rejected by a remote inference server's full queue
        raise _queue_full() from None
    except Unavailable as e:
        log.error("request %s: %s", request.state.request_id, e)
        raise ApiError(503, "backend_unavailable", BACKEND_UNAVAILABLE, {"Retry-After": "1"}) from None
    except ImageError as e:  # the header was fine, the pixels were not
        raise ApiError(e.status, "invalid_image", e.message) from None
    except BatchFailed as e:
        log.error("request %s: %s", request.state.request_id, e)
        raise ApiError(500, "inference_failed", INFERENCE_FAILED) from None
    finally:
        watcher.cancel()
    return result, decoded


def _answer(task: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Count a successful answer (once built: a failure while building it counts as an error)."""
    metrics.REQUESTS.labels(task, "ok").inc()
    return payload


async def _withdraw_on_disconnect(request: Request, job: Job, batcher: Batcher) -> None:
    """Wait for the client to hang up (the server sends ``http.disconnect`` when the connection is
    lost; the body has been read already) and withdraw its job from the queue at once."""
    with contextlib.suppress(asyncio.CancelledError):
        while (await request.receive())["type"] != "http.disconnect":
            pass
        batcher.withdraw(job, ClientGone())


def _meta(request: Request, state: ServiceState) -> dict[str, str]:
    """The fields every answer carries besides its result."""
    backend, _ = state.serving()
    return {"request_id": request.state.request_id, "model_version": backend.files.version}


@task_route("entailment", EntailmentRequest, EntailmentResponse)
async def entailment(request: Request, state: State) -> dict[str, Any]:
    """Visual entailment: does the image entail, contradict, or say nothing about the hypothesis?"""
    body, raw = await _parse(request, EntailmentRequest)
    texts = _check_texts(state.settings, [body.hypothesis], "hypothesis")
    result = await _run(request, state, "entailment", raw, texts)
    verdict = entailment_result(result.outputs["ve_logits"][0])
    return _answer("entailment", {**verdict, **_meta(request, state)})


@task_route("grounding", GroundingRequest, GroundingResponse)
async def grounding(request: Request, state: State) -> dict[str, Any]:
    """Referring-expression grounding: the box of the object the expression names."""
    body, raw = await _parse(request, GroundingRequest)
    texts = _check_texts(state.settings, [body.expression], "expression")
    result = await _run(request, state, "grounding", raw, texts)
    backend, _ = state.serving()
    rec, itm = result.outputs["rec_logits"][0], result.outputs["itm_logits"][0]
    box = grounding_result(rec, result.regions, 0, itm, backend.files.vocab.decline_below)
    return _answer("grounding", {**box, **_meta(request, state)})


@task_route("vqa", VqaRequest, VqaResponse)
async def vqa(request: Request, state: State) -> dict[str, Any]:
    """Visual question answering over the model's answer vocabulary."""
    body, raw = await _parse(request, VqaRequest)
    texts = _check_texts(state.settings, [body.question], "question")
    result = await _run(request, state, "vqa", raw, texts)
    backend, _ = state.serving()
    top = vqa_result(result.outputs["vqa_logits"][0], backend.files.vocab.answers, body.top_k)
    return _answer("vqa", {**top, **_meta(request, state)})


@task_route("matching", MatchingRequest, MatchingResponse)
async def matching(request: Request, state: State) -> dict[str, Any]:
    """Image-text matching: a match probability for each candidate text (the image is detected once)."""
    body, raw = await _parse(request, MatchingRequest)
    limit = state.settings.max_texts
    if len(body.texts) > limit:
        raise ApiError(422, "too_many_texts", f"{len(body.texts)} texts; the limit is {limit} per request")
    texts = _check_texts(state.settings, body.texts, "texts")
    result = await _run(request, state, "matching", raw, texts)
    probs = sigmoid(result.outputs["itm_logits"].astype(np.float64))
    return _answer(
        "matching",
        {"scores": [float(p) for p in probs], "best": int(probs.argmax()), **_meta(request, state)},
    )
