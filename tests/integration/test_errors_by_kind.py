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


def test_listing_change_names_the_field_that_makes_a_listing_false() -> None:
    change = _module().listing_change
    objects = {
        "width": 128,
        "height": 128,
        "objects": [
            {"box": [10, 10, 40, 40], "tag": "circle", "attribute": "red", "size": "large"},
            {"box": [60, 60, 72, 72], "tag": "square", "attribute": "blue", "size": "small"},
            {"box": [90, 10, 102, 22], "tag": "circle", "attribute": "red", "size": "small"},
        ],
    }
    head = "a scene with three shapes: "
    assert (
        change(head + "a big red circle, a small green square and a small red circle.", objects) == "colour"
    )
    assert (
        change(head + "a big red circle, a small blue triangle and a small red circle.", objects) == "shape"
    )
    assert change(head + "a big red circle, a big blue square and a small red circle.", objects) == "size"
    # two big red circles where one is small: the size of either item
    assert change(head + "a big red circle, a small blue square and a big red circle.", objects) == "size"
    # a green triangle: no one field of one item fixes it
    assert change(head + "a big red circle, a green triangle and a small red circle.", objects) == "other"
    colour = _module().colour_change_kind  # a bag of colours tells "new" from the scene, not "swapped"
    assert colour(head + "a big red circle, a small green square and a small red circle.", objects) == "new"
    assert colour(head + "a big red circle, a small red square and a small red circle.", objects) == "new"
    swapped = head + "a big red circle, a small blue square and a small blue circle."
    assert change(swapped, objects) == "colour" and colour(swapped, objects) == "swapped"


def test_listing_changes_split_the_non_matching_listings(
    tmp_path: Path, tiny_world, tiny_model_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    data = tiny_world[0]
    out = tmp_path / "kinds.json"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(tiny_model_dir),
            str(data),
            "--output",
            str(out),
            "--listing-changes",
        ],
        check=True,
    )
    itm = json.loads(out.read_text())["itm"]
    records = [json.loads(line) for line in (data / "itm.jsonl").read_text().splitlines()]
    negatives = sum(r["kind"] == "listing" and not r["match"] for r in records)
    split = {k: v for k, v in itm.items() if k.startswith("listing-neg/") and k.count("/") == 1}
    assert negatives and sum(v["n"] for v in split.values()) == itm["listing-neg"]["n"] == negatives
    assert set(split) <= {f"listing-neg/{f}" for f in ("colour", "shape", "size", "several", "other")}
    # the colour changes once more, by whether a bag of colours could tell
    colour = {k: v for k, v in itm.items() if k.startswith("listing-neg/colour/")}
    assert set(colour) <= {"listing-neg/colour/new", "listing-neg/colour/swapped"}
    assert sum(v["n"] for v in colour.values()) == itm.get("listing-neg/colour", {"n": 0})["n"]
