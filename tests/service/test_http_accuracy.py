"""Through HTTP against a real uvicorn process: each endpoint's accuracy on a fresh test split
equals `cmal evaluate`'s within 1 point, with 64 concurrent clients and no failures. (That batches
form is tested deterministically in test_api.py; here it would depend on requests coinciding.)"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from cmal.data.formats import load
from cmal.data.generate import generate_split
from cmal.imaging import iou
from tests.service.test_process import start

CMAL = str(Path(sys.executable).with_name("cmal"))


@pytest.mark.slow
def test_http_accuracy_matches_cmal_evaluate(demo_exported: Path, tmp_path: Path) -> None:
    data = tmp_path / "test"
    generate_split(data, seed=6060, num_images=100, split="test", progress=False)
    model = demo_exported
    out = tmp_path / "eval.json"
    evaluate = [
        CMAL,
        "evaluate",
        "--model",
        str(model),
        "--data",
        str(data),
        "--task",
        "all",
        "--output",
        str(out),
    ]
    subprocess.run([*evaluate, "--quiet"], check=True, capture_output=True, timeout=600)
    offline = json.loads(out.read_text())

    # no deadline within reach: a slow machine must not turn accuracy into 504s
    proc, url = start(
        model, CMAL_MAX_BATCH_SIZE="32", CMAL_MAX_BATCH_DELAY_MS="5", CMAL_REQUEST_TIMEOUT_MS="300000"
    )
    images: dict[Path, str] = {}

    def image(path: Path) -> str:
        if path not in images:
            images[path] = base64.b64encode(path.read_bytes()).decode()
        return images[path]

    calls = []
    for r in load(data / "ve.jsonl", "ve"):
        calls.append(("ve", "/v1/entailment", {"image": image(r.image), "hypothesis": r.hypothesis}, r.label))
    for r in load(data / "rec.jsonl", "rec"):
        calls.append(("rec", "/v1/grounding", {"image": image(r.image), "expression": r.expression}, r.box))
    for r in load(data / "vqa.jsonl", "vqa"):
        calls.append(("vqa", "/v1/vqa", {"image": image(r.image), "question": r.question}, r.answers))
    for r in load(data / "itm.jsonl", "itm"):
        calls.append(("itm", "/v1/matching", {"image": image(r.image), "texts": [r.text]}, r.match))

    client = httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=64))

    def call(c: tuple) -> tuple[str, int, dict, object]:  # type: ignore[type-arg]
        task, path, body, gold = c
        r = client.post(path, json=body)
        return task, r.status_code, r.json(), gold

    try:
        with ThreadPoolExecutor(max_workers=64) as pool:  # 64 concurrent clients
            results = list(pool.map(call, calls))
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert [s for _, s, _, _ in results if s != 200] == []  # no request failed
    hits: dict[str, list[bool]] = {"ve": [], "rec": [], "vqa": [], "itm": []}
    for task, _, body, gold in results:
        if task == "ve":
            hits[task].append(body["label"] == gold)
        elif task == "rec":  # as cmal.tasks scores it: a box on the object, or none for "nothing"
            box = body["box"]
            if gold is None:
                hits[task].append(box is None)
            else:
                hits[task].append(box is not None and iou(np.array([box]), np.array([gold]))[0, 0] >= 0.5)
        elif task == "vqa":
            hits[task].append(body["answer"] in gold)
        else:
            hits[task].append((body["scores"][0] > 0.5) == gold)
    for task, values in hits.items():
        assert len(values) >= 200, task
        http = float(np.mean(values))
        print(f"{task}: HTTP {http:.4f} vs cmal evaluate {offline[task]['accuracy']:.4f} on {len(values)}")
        assert abs(http - offline[task]["accuracy"]) <= 0.01, (task, http, offline[task]["accuracy"])
