"""The container stack, checked without a Docker engine: compose file, Dockerfiles, Prometheus
config, and the runtime image's install list (no torch)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.tools import require

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    return require(name)


def test_compose_file_is_valid() -> None:
    result = subprocess.run(
        [tool("docker-compose"), "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = result.stdout
    for service in ("api:", "api-gpu:", "prometheus:", "grafana:"):
        assert service in config
    assert "GF_AUTH_ANONYMOUS_ENABLED" in config and "condition: service_healthy" in config
    gpu = subprocess.run(
        [tool("docker-compose"), "-f", "docker-compose.yml", "--profile", "gpu", "config", "--services"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert gpu.returncode == 0 and "api-gpu" in gpu.stdout.split()
    triton = subprocess.run(
        [tool("docker-compose"), "-f", "docker-compose.yml", "--profile", "triton", "config"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert triton.returncode == 0, triton.stderr
    assert "CMAL_BACKEND: triton" in triton.stdout and "CMAL_TRITON_URL: triton:8001" in triton.stdout


def test_prometheus_scrapes_what_runs_in_either_profile() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    scrape = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    # one API target: the CPU service, or the GPU or Triton-backed one under its alias
    assert jobs["cmal-api"]["static_configs"] == [{"targets": ["api:8000"]}]
    for service, profile in (("api-gpu", "gpu"), ("api-triton", "triton")):
        assert "api" in compose[service]["networks"]["default"]["aliases"]
        assert compose[service]["profiles"] == [profile]
    assert "profiles" not in compose["api"]
    # Triton, found by DNS only where the triton profile runs it (no target, not a down one, elsewhere)
    assert compose["triton"]["profiles"] == ["triton"]
    assert jobs["triton"]["dns_sd_configs"] == [
        {"names": ["triton"], "type": "A", "port": 8002, "refresh_interval": "30s"}
    ]
    assert "--model-repository=/models" in compose["triton"]["command"]
    mounted = " ".join(compose["prometheus"]["volumes"])
    assert "alerts.yml:/etc/prometheus/alerts.yml" in mounted and scrape["rule_files"] == ["alerts.yml"]


def test_dockerfiles_pass_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), "docker/Dockerfile", "docker/Dockerfile.gpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "config", "docker/prometheus/prometheus.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_image_installs_no_torch(tmp_path: Path) -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    runtime = dockerfile.split("AS runtime", 1)[1]
    installs = re.findall(r"pip install[^\n]*", runtime)
    assert installs == [
        "pip install --no-cache-dir -r requirements-serve.txt",
        "pip install --no-cache-dir --no-deps . \\",
    ]
    lines = (ROOT / "requirements" / "serve.lock").read_text().lower().splitlines()
    assert not [line for line in lines if "torch" in line and not line.startswith("#")]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), "-r", str(ROOT / "requirements" / "serve.lock")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"onnxruntime", "fastapi", "tokenizers", "pillow"} <= names
    assert not {n for n in names if n == "torch" or n.startswith("nvidia-") or n == "triton"}, names
