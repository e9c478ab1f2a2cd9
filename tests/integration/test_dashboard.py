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
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.service.test_process import free_port, start
from tests.tools import require

ROOT = Path(__file__).resolve().parents[2]


def prometheus_binary() -> str:
    return require("prometheus", "apt-get install prometheus")


def dashboard(name: str = "cmal") -> dict[str, Any]:
    return dict(json.loads((ROOT / "docker" / "grafana" / "dashboards" / f"{name}.json").read_text()))


# what Grafana puts in for its variables: every instance, a rate window of a few scrapes
VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}


def panel_queries(name: str = "cmal") -> list[tuple[str, str]]:
    """Each panel's queries in dashboard ``name``, with Grafana's variables filled in as Grafana would."""
    out = []
    for p in dashboard(name)["panels"]:
        for t in p["targets"]:
            expr = t["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((p["title"], expr))
    return out


@pytest.mark.parametrize("name", ["cmal", "triton"])
def test_panels_are_described_and_filter_by_instance(name: str) -> None:
    board = dashboard(name)
    assert [v["name"] for v in board["templating"]["list"]] == ["instance"]
    for panel in board["panels"]:
        assert len(panel.get("description", "")) > 30, panel["title"]
        for target in panel["targets"]:
            assert '$instance"' in target["expr"], (panel["title"], target["expr"])
            assert "[1m]" not in target["expr"], panel["title"]  # windows follow the scrape interval
    boxes = [
        (p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"]) for p in board["panels"]
    ]
    for i, (x, y, w, h) in enumerate(boxes):  # no two panels overlap
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y


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


@contextmanager
def prometheus(url: str, tmp_path: Path, triton_metrics: str = "") -> Iterator[str]:
    """A real Prometheus scraping the service at ``url`` every second with the repo's config and
    rules (and Triton's metrics at ``triton_metrics``, ``host:port``, in place of the config's DNS
    lookup of the ``triton`` service; without it that job is dropped); yields its API base once
    it has scraped every target."""
    import yaml

    binary = prometheus_binary()
    port = url.rsplit(":", 1)[1]
    config = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["cmal-api"]["static_configs"] == [{"targets": ["api:8000"]}]
    jobs["cmal-api"]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    assert jobs["triton"]["dns_sd_configs"][0]["names"] == ["triton"]
    if triton_metrics:
        del jobs["triton"]["dns_sd_configs"]
        jobs["triton"]["static_configs"] = [{"targets": [triton_metrics]}]
    else:
        config["scrape_configs"].remove(jobs["triton"])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
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
                if len(targets) == len(config["scrape_configs"]) and all(
                    t["health"] == "up" for t in targets
                ):
                    break
            except (httpx.HTTPError, KeyError, IndexError):
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("Prometheus never scraped every target")
        yield api
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def scraped_after(api: str, moment: float) -> None:
    """Wait until Prometheus holds a scrape of the service taken after ``moment`` (epoch s)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        body = httpx.get(f"{api}/query", params={"query": "timestamp(up)"}, timeout=10).json()
        results = body["data"]["result"]
        if results and float(results[0]["value"][1]) > moment:
            return
        time.sleep(0.3)
    raise AssertionError("no scrape after the load")


@pytest.mark.slow
def test_prometheus_p50_agrees_with_the_clients(demo_exported: Path, tmp_path: Path) -> None:
    """The latency histogram's buckets resolve what clients see: Prometheus's p50 from the
    exposed buckets lies within 25% of the p50 the load generator measured on the same requests.

    The requests are real work (the demo model, 32 texts a request: about 10-30 ms here), so the
    client's own share of a round trip (about 1 ms) does not decide the comparison."""
    service, url = start(demo_exported)
    try:
        with prometheus(url, tmp_path) as api:
            buf = io.BytesIO()
            Image.new("RGB", (128, 128), (190, 200, 210)).save(buf, "PNG")
            texts = [f"there are {i % 5} circles and a {('red', 'blue')[i % 2]} square." for i in range(32)]
            body = {"image": base64.b64encode(buf.getvalue()).decode(), "texts": texts}
            measured = []
            with httpx.Client(base_url=url, timeout=30) as c:
                # one request first, scraped before the measured ones: increase() needs the series
                # to exist before the requests it counts
                assert c.post("/v1/matching", json=body).status_code == 200
                scraped_after(api, time.time())
                began = time.time()
                for _ in range(60):
                    start_s = time.perf_counter()
                    assert c.post("/v1/matching", json=body).status_code == 200
                    measured.append(time.perf_counter() - start_s)
            scraped_after(api, time.time())
            window = math.ceil(time.time() - began) + 1  # from the scrape before them to one after
            # only these requests reach /v1/matching in the window
            query = (
                "histogram_quantile(0.5, sum by (le) (increase("
                f'http_request_duration_seconds_bucket{{handler="/v1/matching"}}[{window}s])))'
            )
            result = httpx.get(f"{api}/query", params={"query": query}, timeout=10).json()["data"]["result"]
            from_prometheus = float(result[0]["value"][1])
            clients = statistics.median(measured)
            assert abs(from_prometheus - clients) <= 0.25 * clients, (from_prometheus, clients)
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)


def empty_panels(api: str, name: str) -> list[str]:
    """The queries of dashboard ``name`` that return no data (or only NaN) in Prometheus now;
    each must at least be valid PromQL."""
    empty = []
    for title, expr in panel_queries(name):
        body = httpx.get(f"{api}/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", (title, body)
        values = [float(r["value"][1]) for r in body["data"]["result"]]
        if not values or all(math.isnan(v) for v in values):
            empty.append(f"{title}: {expr}")
    return empty


def panels_with_data(api: str, url: str, name: str, timeout_s: float = 120) -> bool:
    """Send load to the service at ``url`` until every query of dashboard ``name`` has data (rates
    need two scrapes after the load): waits for Prometheus's state, not for a sleep to be long
    enough. Fails naming the empty panels after ``timeout_s``."""
    deadline = time.time() + timeout_s
    while True:
        load(url)
        empty = empty_panels(api, name)
        if not empty:
            return True
        assert time.time() < deadline, "panels without data:\n" + "\n".join(empty)
        time.sleep(1)


def check_panels(api: str, url: str) -> None:
    """Load the service until every panel's query has data, then check the alert rules."""
    assert panels_with_data(api, url, "cmal")
    assert len(panel_queries()) >= 13
    # the alert rules load in the real Prometheus, evaluate without error, and a healthy
    # service under light load fires none of them
    groups = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert len(loaded) == 8 and all(r["health"] == "ok" for r in loaded), loaded
    assert [r["name"] for r in loaded if r["state"] != "inactive"] == []


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_every_panel_query_returns_data(tiny_exported: Path, tmp_path: Path, processes: int) -> None:
    # with two server processes /metrics adds both up, process memory and CPU included
    service, url = start(tiny_exported, CMAL_PROCESSES=str(processes))
    try:
        with prometheus(url, tmp_path) as api:
            check_panels(api, url)
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)
