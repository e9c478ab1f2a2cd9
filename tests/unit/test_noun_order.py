"""scripts/noun_order.py: relation questions asked the other way round, with answers the checker proves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cmal.data.checker import Scene
from tests.scripts import SCRIPTS, load_script

SCRIPT = SCRIPTS / "noun_order.py"


def _swapped(question: str) -> str:
    result: str = load_script("noun_order").swapped(question)
    return result


def test_the_two_noun_phrases_trade_places() -> None:
    assert (
        _swapped("is the red disc to the left of the big box?")
        == "is the big box to the left of the red disc?"
    )
    assert _swapped("is the red disc located above the box?") == "is the box located above the red disc?"
    assert _swapped("would you say the cross is under the tiny thing?") == (
        "would you say the tiny thing is under the cross?"
    )


def test_every_swapped_answer_is_right(shapes_train: Path, tmp_path: Path) -> None:
    out = tmp_path / "swapped"
    subprocess.run(
        [sys.executable, str(SCRIPT), str(shapes_train), str(out)], check=True, capture_output=True
    )
    scenes = {}
    for line in (shapes_train / "objects.jsonl").read_text().splitlines():
        r = json.loads(line)
        scenes[r["image"]] = Scene(r)
    rows = [json.loads(line) for line in (out / "vqa.jsonl").read_text().splitlines()]
    original = [json.loads(line) for line in (shapes_train / "vqa.jsonl").read_text().splitlines()]
    assert len(rows) == sum(r["kind"] == "relation" for r in original) > 0
    for r in rows:
        assert scenes[r["image"]].answer(r["question"]) == r["answers"][0], r
