"""Run the service: ``python -m service [--host 127.0.0.1] [--port 8000]`` (settings from CMAL_*).

SIGTERM / SIGINT: readiness turns 503 at once, in-flight requests finish, then the process exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from types import FrameType

import uvicorn

from service.app import create_app
from service.settings import Settings


class DrainingServer(uvicorn.Server):
    """uvicorn's server, flipping the app to draining the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, app: object):
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Mark the service draining (``/readyz`` 503), then let uvicorn shut down gracefully."""
        self._app.state.service.draining = True  # type: ignore[attr-defined]
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's signal capture, without re-raising the captured signal: a completed drain exits 0."""
        # uvicorn re-raises a captured SIGTERM after its graceful shutdown, so the process would end
        # "killed by SIGTERM"; the drain completed, so report success (exit status 0) instead
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def main() -> None:
    """Parse the command line and serve the app (settings from CMAL_*) until a stop signal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()  # type: ignore[call-arg]  # every field has a default
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive_s,
    )
    DrainingServer(config, app).run()


if __name__ == "__main__":
    main()
