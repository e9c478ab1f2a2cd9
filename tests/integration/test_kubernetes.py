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
