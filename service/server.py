"""uvicorn's server as the service runs it: draining from the first stop signal, exiting 0 after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn

from service import metrics
from service.settings import Settings


class DrainingServer(uvicorn.Server):
    """uvicorn's server, flipping the app to draining the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, app: object | None = None):
        super().__init__(config)
        self._app = app  # None: the app the config loads (a server process of several)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Mark the service draining (``/readyz`` 503), then let uvicorn shut down gracefully."""
        app: Any = self._app or self.config.loaded_app
        while app is not None and not hasattr(app, "state"):  # under uvicorn's own middleware
            app = getattr(app, "app", None)
        if app is not None:
            app.state.service.draining = True
        metrics.READY.set(0)  # readiness and its gauge turn at once
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's signal capture, without re-raising the captured signal: a completed drain exits 0."""
        # uvicorn re-raises a captured SIGTERM after its graceful shutdown, so the process would end
        # "killed by SIGTERM"; the drain completed, so report success (exit status 0) instead
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def server_config(app: object, settings: Settings, host: str, port: int, log_level: str) -> uvicorn.Config:
    """uvicorn's configuration for the app (an import string: a factory, one per process)."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive_s,
        log_config=None,  # configure_logging's JSON handler formats uvicorn's lines too
        access_log=False,  # AccessLog writes one richer line per request instead
        workers=settings.processes,
        factory=isinstance(app, str),
    )
