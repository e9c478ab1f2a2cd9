"""Run the service: ``python -m service [--host 127.0.0.1] [--port 8000]`` (settings from CMAL_*).

SIGTERM / SIGINT: readiness turns 503 at once, in-flight requests finish, then the process exits 0.

``CMAL_PROCESSES`` above 1 runs that many server processes on the one port (uvicorn's supervisor:
a parent that starts them, restarts one that dies and passes a stop signal on to each), every
one with its own model, batcher and workers. One process's event loop parses every request
under one interpreter lock, which caps a CPU server well before its inference workers do; each
process has its own. The metrics of all processes are added up (`service.metrics`).
"""

from __future__ import annotations

import argparse
import sys

from service.access_log import configure_logging
from service.app import create_app
from service.server import DrainingServer, server_config
from service.settings import Settings


def preflight(settings: Settings) -> None:
    """Check, before any server starts, that the model can be served: the model directory, its
    files and its exported graphs (`ValueError` / `FileNotFoundError` with one clear line)."""
    from cmal.inference import GraphMismatch, verify_backend_graphs
    from cmal.model_dir import EXPORT_DIR, MODEL_FILES, require

    model_dir = settings.model_dir
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} does not exist (set CMAL_MODEL_DIR)")
    require(model_dir, MODEL_FILES)
    if settings.backend in ("onnx", "torchscript"):
        graphs = settings.graphs_dir or model_dir / EXPORT_DIR
        onnx = settings.backend == "onnx"
        try:  # the weights, then only the two graphs this backend will load
            verify_backend_graphs(model_dir, graphs, settings.backend, settings.variant if onnx else "fp32")
        except GraphMismatch as e:
            raise ValueError(str(e)) from None
    if settings.backend in ("torch", "torchscript") and settings.variant != "fp32":
        import torch

        from service.runtime import require_torch_variant

        device = "cuda" if torch.cuda.is_available() else "cpu"
        require_torch_variant(settings.backend, settings.variant, device)


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
    if settings.processes > 1:
        from service.processes import run_processes

        return run_processes(settings, overrides, host, port, log_level)
    app = create_app(settings)
    DrainingServer(server_config(app, settings, host, port, log_level), app).run()
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
