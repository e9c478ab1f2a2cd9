"""Liveness, readiness, model information and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from cmal.tasks import ROUTES
from service.openapi import TASK_ERRORS, error_responses
from service.schemas import ModelInfo
from service.security import require_api_key
from service.state import State

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    """200 only when the model is loaded and warmed; 503 before that and while draining."""
    if state.ready and not state.draining:
        return JSONResponse({"status": "ready"})
    reason = "draining" if state.draining else "loading"
    return JSONResponse({"status": reason}, status_code=503, headers={"Retry-After": "1"})


@router.get(
    "/v1/models",
    response_model=list[ModelInfo],
    dependencies=[Depends(require_api_key)],
    responses=error_responses({401: TASK_ERRORS[401]}),
)
async def models(state: State) -> list[dict[str, object]]:
    """The served model: name, version, backend, execution provider, tasks."""
    backend = state.backend
    if backend is None:
        return []
    return [
        {
            "name": backend.files.name,
            "version": backend.files.version,
            "backend": backend.name,
            "execution_provider": backend.provider,
            "tasks": list(ROUTES),
            "answers": len(backend.files.vocab.answers),
            "max_batch_size": state.settings.max_batch_size,
        }
    ]
