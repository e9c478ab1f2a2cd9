"""Several server processes on one port (``CMAL_PROCESSES`` above 1), under uvicorn's supervisor.

A parent starts the processes, restarts one that dies and passes a stop signal on to each; every
process has its own model, batcher and workers. One process's event loop parses every request
under one interpreter lock, which caps a CPU server well before its inference workers do; each
process has its own. Their metrics are added up (`service.metrics`). This module is imported by
the processes themselves (spawned, so nothing here may live in ``__main__``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import sys
import tempfile

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import multiprocess

from service.access_log import configure_logging
from service.app import create_app
from service.server import DrainingServer, server_config
from service.settings import Settings

_LOG_LEVEL = "_CMAL_SERVICE_LOG_LEVEL"  # the parent's --log-level, for its server processes


def process_app() -> FastAPI:
    """The app of one server process of several (``CMAL_PROCESSES``): settings from the
    environment the parent prepared, logging as the parent's."""
    configure_logging(os.environ.get(_LOG_LEVEL, "info"))
    return create_app()


def _term_with_parent(parent: int) -> None:
    """Ask Linux for SIGTERM when the parent process dies (prctl PR_SET_PDEATHSIG), so a server
    process whose parent is killed drains and exits instead of serving on, orphaned; elsewhere
    nothing. A parent that died before the request (while this process was still starting) sends
    nothing, so that case is checked here: this process then leaves at once."""
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        raise SystemExit(f"cmal service: parent process {parent} has gone before this one started; exiting")


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class DrainingProcess(multiprocess.Process):
    """uvicorn's server process, running `DrainingServer` instead of uvicorn's plain server, and
    ending with its parent."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self.parent = os.getpid()  # made in the parent; travels to the process with the object
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        """Run in the new process: tie its life to the parent's first, then serve."""
        _term_with_parent(self.parent)
        super().target(sockets)

    @property
    def server(self) -> uvicorn.Server:
        """The process's server (made in the process, on first use)."""
        if self._server is None:
            self._server = DrainingServer(self.config)
        return self._server


def run_processes(
    settings: Settings, overrides: dict[str, object], host: str, port: int, log_level: str
) -> int:
    """Serve with ``settings.processes`` server processes under uvicorn's supervisor; their
    metrics go to a fresh folder, removed at the end."""
    for name, value in overrides.items():  # the processes read their settings from CMAL_*
        if value is not None:
            os.environ[f"CMAL_{name.upper()}"] = str(value)
    os.environ[_LOG_LEVEL] = log_level
    folder = tempfile.mkdtemp(prefix="cmal-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # before any server process imports prometheus_client
    config = server_config("service.processes:process_app", settings, host, port, log_level)
    # uvicorn's supervisor builds its processes from this module-level name (uvicorn 0.54): ours
    # run the draining server, so /readyz says 503 from the stop signal on in every process
    multiprocess.Process = DrainingProcess  # type: ignore[misc]
    try:
        multiprocess.Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
