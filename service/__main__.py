"""Run the service: ``python -m service [--host 127.0.0.1] [--port 8000]`` (settings from CMAL_*).

SIGTERM / SIGINT: readiness turns 503 at once, in-flight requests finish, then the process exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from types import FrameType

import uvicorn

from service import metrics
from service.access_log import configure_logging
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


def preflight(settings: Settings) -> None:
    """Check, before any server starts, that the model can be served: the model directory, its
    files and its exported graphs (`ValueError` / `FileNotFoundError` with one clear line)."""
    from cmal.inference import GraphMismatch, read_manifest
    from cmal.model_dir import EXPORT_DIR, MODEL_FILES, graph_file, require

    model_dir = settings.model_dir
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} does not exist (set CMAL_MODEL_DIR)")
    require(model_dir, MODEL_FILES)
    if settings.backend in ("onnx", "torchscript"):
        graphs = settings.graphs_dir or model_dir / EXPORT_DIR
        onnx = settings.backend == "onnx"
        try:  # the weights, then only the two graphs this backend will load
            manifest = read_manifest(model_dir, graphs, files=())
            variant = settings.variant if onnx else "fp32"
            fmt = "onnx" if onnx else "torchscript"
            read_manifest(
                model_dir,
                graphs,
                files=[graph_file(manifest, g, variant, fmt) for g in ("detector", "fusion")],
            )
        except GraphMismatch as e:
            raise ValueError(str(e)) from None


def run_service(overrides: dict[str, object], host: str, port: int, log_level: str = "info") -> int:
    """Serve until a stop signal; returns the exit status (2, with one line on stderr, when the
    settings are invalid or the model cannot be served)."""
    from pydantic import ValidationError

    configure_logging(log_level)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]  # CMAL_* fill the rest
        preflight(settings)
    except ValidationError as e:
        problems = "; ".join(f"CMAL_{'.'.join(map(str, x['loc'])).upper()}: {x['msg']}" for x in e.errors())
        print(f"error: invalid setting: {problems}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=settings.keep_alive_s,
        log_config=None,  # configure_logging's JSON handler formats uvicorn's lines too
        access_log=False,  # AccessLog writes one richer line per request instead
    )
    DrainingServer(config, app).run()
    return 0


def main() -> None:
    """Parse the command line and serve the app (settings from CMAL_*) until a stop signal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    sys.exit(run_service({}, args.host, args.port, args.log_level))


if __name__ == "__main__":
    main()
