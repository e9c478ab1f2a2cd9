"""Every Grafana panel's query returns data from a real Prometheus scraping the real service.

Starts the service and Prometheus (Debian package) on 127.0.0.1 with the repo's scrape config
(target rewritten to the test port, 1 s interval), sends a short mixed load, then runs each panel's
query through Prometheus' HTTP API.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.service.test_process import free_port, start

ROOT = Path(__file__).resolve().parents[2]


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path:
        return path
    message = "prometheus is not installed (apt-get install prometheus)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((ROOT / "docker" / "grafana" / "dashboards" / "cmal.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def load(url: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (128, 128), (190, 200, 210)).save(buf, "PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(6):
            assert (
                c.post(
                    "/v1/entailment", json={"image": image, "hypothesis": f"there are {i} circles."}
                ).status_code
                == 200
            )
            assert (
                c.post("/v1/grounding", json={"image": image, "expression": "the red box"}).status_code == 200
            )
            assert (
                c.post("/v1/vqa", json={"image": image, "question": "how many boxes are there?"}).status_code
                == 200
            )
            assert (
                c.post("/v1/matching", json={"image": image, "texts": ["a red box.", "no box."]}).status_code
                == 200
            )
            assert c.post("/v1/vqa", json={"image": "!!", "question": "q?"}).status_code == 422


@pytest.mark.slow
def test_every_panel_query_returns_data(tiny_exported: Path, tmp_path: Path) -> None:
    binary = prometheus_binary()
    service, url = start(tiny_exported)
    port = url.rsplit(":", 1)[1]
    config = (ROOT / "docker" / "prometheus" / "prometheus.yml").read_text()
    config = config.replace('["api:8000"]', f'["127.0.0.1:{port}"]').replace("5s", "1s")
    assert f"127.0.0.1:{port}" in config
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copyfile(ROOT / "docker" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    prom_port = free_port()
    prom = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                answer = httpx.get(f"{api}/targets", timeout=2)
                # while starting, Prometheus answers 503 in plain text: not ready yet
                targets = answer.json()["data"]["activeTargets"] if answer.status_code == 200 else []
                if targets and targets[0]["health"] == "up":
                    break
            except (httpx.HTTPError, KeyError, IndexError):
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("Prometheus never scraped the service")
        # keep sending load until every panel has data (rates need two scrapes after the load):
        # waits for Prometheus's state, not for a sleep to be long enough
        deadline = time.time() + 120
        while True:
            load(url)
            empty = []
            for title, expr in panel_queries():
                body = httpx.get(f"{api}/query", params={"query": expr}, timeout=10).json()
                assert body["status"] == "success", (title, body)
                values = [float(r["value"][1]) for r in body["data"]["result"]]
                if not values or all(math.isnan(v) for v in values):
                    empty.append(f"{title}: {expr}")
            if not empty or time.time() > deadline:
                break
            time.sleep(1)
        assert empty == [], "panels without data:\n" + "\n".join(empty)
        assert len(panel_queries()) >= 13
        # the alert rules load in the real Prometheus, evaluate without error, and a healthy
        # service under light load fires none of them
        groups = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        loaded = [r for g in groups for r in g["rules"]]
        assert len(loaded) == 8 and all(r["health"] == "ok" for r in loaded), loaded
        assert [r["name"] for r in loaded if r["state"] != "inactive"] == []
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
