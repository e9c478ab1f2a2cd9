"""The Kubernetes manifests validate offline against the Kubernetes API schemas (a broken copy
does not), and agree with the service: real settings, the probes' endpoints, a grace period
that covers the drain."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from service.settings import Settings

MANIFESTS = sorted((Path(__file__).resolve().parents[2] / "docker" / "kubernetes").glob("*.yaml"))
DRAIN_S = 30  # the service's graceful shutdown (service/__main__.py)


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, latest_version(), strict=True)


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    docs = documents()
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for doc in docs:
        validate(doc)


def test_a_broken_manifest_is_caught() -> None:
    deployment = next(d for d in documents() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "two"  # a string where the schema wants an integer
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(unknown)  # strict: a misspelt field is an error, not silently ignored


def test_the_api_deployment_agrees_with_the_service() -> None:
    deployment = next(
        d for d in documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "cmal-api"
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    settings = {f"CMAL_{name.upper()}" for name in Settings.model_fields}
    assert {e["name"] for e in container["env"]} <= settings
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pause + DRAIN_S  # the drain is never cut short


def test_triton_runs_on_a_gpu_behind_a_service_the_api_can_reach() -> None:
    docs = documents()
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cmal-triton")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "--model-config-name=gpu" in container["args"]  # configs/gpu.pbtxt of the exported repository
    exit_timeout = next(
        int(a.split("=")[1]) for a in container["args"] if a.startswith("--exit-timeout-secs=")
    )
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pause + exit_timeout
    claim = next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]["claimName"]
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim for d in docs)
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "cmal-triton")
    assert {"name": "grpc", "port": 8001, "targetPort": "grpc", "protocol": "TCP"} in service["spec"]["ports"]
    # the switch the manifest's header gives names a real setting and this Service's gRPC port
    header = (MANIFESTS[0].parent / "triton.yaml").read_text().split("apiVersion", 1)[0]
    assert "CMAL_BACKEND=triton CMAL_TRITON_URL=cmal-triton:8001" in header
    assert {"CMAL_BACKEND", "CMAL_TRITON_URL"} <= {f"CMAL_{n.upper()}" for n in Settings.model_fields}
