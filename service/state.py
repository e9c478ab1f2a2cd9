"""The running service's state, typed, and the FastAPI dependency that hands it to endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from service.batcher import Batcher
from service.errors import ApiError
from service.runtime import Backend
from service.settings import Settings


@dataclass
class ServiceState:
    """Settings, and once the lifespan has loaded and warmed the model, its backend and batcher."""

    settings: Settings
    backend: Backend | None = None
    batcher: Batcher | None = None
    ready: bool = False  # loaded and warm; False again from the start of shutdown
    draining: bool = False  # a stop signal arrived: /readyz says 503 so traffic moves elsewhere
    tracer: Any = None  # an OpenTelemetry tracer when CMAL_TRACING is on (service.tracing)

    def serving(self) -> tuple[Backend, Batcher]:
        """The backend and batcher, or 503 while the model is not loaded (yet, or any more).

        While draining only ``/readyz`` turns 503 so that load balancers stop sending; requests
        that still arrive before the listener closes are served: nothing accepted is lost.
        """
        if not self.ready or self.backend is None or self.batcher is None:
            raise ApiError(503, "not_ready", "the model is not ready yet", {"Retry-After": "1"})
        return self.backend, self.batcher


async def service_state(request: Request) -> ServiceState:
    """The app's `ServiceState` (set by ``create_app``). Async on purpose: FastAPI runs a plain
    ``def`` dependency in its thread pool, a thread hop on every request for one attribute read."""
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(service_state)]
"""An endpoint parameter receiving the service's state."""
