"""Liveness, readiness, model information and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from service.schemas import ModelInfo
from service.security import require_api_key

router = APIRouter(tags=["operations"])
TASKS = ["entailment", "grounding", "vqa", "matching"]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 only when the model is loaded and warmed; 503 before that and while draining."""
    state = request.app.state
    if state.ready and not state.draining:
        return JSONResponse({"status": "ready"})
    reason = "draining" if state.draining else "loading"
    return JSONResponse({"status": reason}, status_code=503, headers={"Retry-After": "1"})


@router.get("/v1/models", response_model=list[ModelInfo], dependencies=[Depends(require_api_key)])
async def models(request: Request) -> list[dict[str, object]]:
    """The served model: name, version, backend, execution provider, tasks."""
    state = request.app.state
    backend = state.backend
    if backend is None:
        return []
    return [
        {
            "name": backend.files.name,
            "version": backend.files.version,
            "backend": backend.name,
            "execution_provider": backend.provider,
            "tasks": TASKS,
            "answers": len(backend.files.answers),
            "max_batch_size": state.settings.max_batch_size,
        }
    ]
