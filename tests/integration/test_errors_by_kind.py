"""scripts/errors_by_kind.py: every example of each task is counted once, under its kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.scripts import SCRIPTS, load_script

SCRIPT = SCRIPTS / "errors_by_kind.py"


def _module() -> ModuleType:
    return load_script("errors_by_kind")


def test_rec_kinds() -> None:
    kind = _module().rec_kind
    assert kind("the leftmost red circle") == "superlative"
    assert kind("the circle to the left of the red square") == "relational"
    assert kind("the square below the green cross") == "relational"
    assert kind("the small blue disc") == "plain"
    assert kind("the circle left of the red square and above the cross") == "non-extreme"


def test_breakdown_counts_every_example(tmp_path: Path, tiny_world, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    data = tiny_world[0]
    out = tmp_path / "kinds.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), str(tiny_model_dir), str(data), "--output", str(out)], check=True
    )
    results = json.loads(out.read_text())
    assert set(results) == {"itm", "vqa", "rec"}
    for task, kinds in results.items():
        lines = (data / f"{task}.jsonl").read_text().splitlines()
        assert sum(r["n"] for r in kinds.values()) == len(lines)
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in kinds.values())
    vqa_kinds = {json.loads(line)["kind"] for line in (data / "vqa.jsonl").read_text().splitlines()}
    assert set(results["vqa"]) == vqa_kinds
    assert all(k.endswith(("-pos", "-neg")) for k in results["itm"])
