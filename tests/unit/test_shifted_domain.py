"""The shifted domain of the generator: another world, talked about in other words, whose labels the
same independent checker proves right."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmal.data.checker import check_dataset
from cmal.data.domain import SHAPES_WORLD, SHIFTED, SHIFTED_WORDING
from cmal.data.generate import generate_split
from tests.unit.test_label_checker import wrong_box
from tests.unit.test_shapes_world import TEXT_FIELD, read

OLD_QUESTIONS = (
    r"(what colou?r is|which colour is|what (kind of )?shape is|what size is|is there|are there any"
    r"|how many \w+ (are there|can you see))"
)


def words_of(folder: Path) -> set[str]:
    return {w for t, f in TEXT_FIELD.items() for r in read(folder, t) for w in re.findall(r"[a-z]+", r[f])}


def test_other_shapes_colours_and_image_size(shifted_train: Path) -> None:
    objects = read(shifted_train, "objects")
    tags = {o["tag"] for r in objects for o in r["objects"]}
    colours = {o["attribute"] for r in objects for o in r["objects"]}
    assert tags == set(SHIFTED.shapes) and colours == set(SHIFTED.colours)
    assert not tags & set(SHAPES_WORLD.shapes) and not colours & set(SHAPES_WORLD.colours)
    image = Image.open(shifted_train / objects[0]["image"])
    assert image.size == (160, 160) and objects[0]["width"] == 160
    assert json.loads((shifted_train / "dataset.json").read_text())["domain"] == "shifted"


def test_other_background(shifted_train: Path, shapes_train: Path) -> None:
    def corner_tint(folder: Path) -> float:  # blue minus red of the top-left 8x8 pixels (background)
        corners = [
            np.asarray(Image.open(p))[:8, :8].astype(float) for p in sorted(folder.glob("images/*"))[:50]
        ]
        return float(np.mean([c[..., 2].mean() - c[..., 0].mean() for c in corners]))

    assert corner_tint(shifted_train) > 20 and abs(corner_tint(shapes_train)) < 8  # bluish, not neutral


def test_other_words(shifted_train: Path) -> None:
    words = words_of(shifted_train)
    shapes_words = {w for ws in SHAPES_WORLD.shape_words.values() for w in ws} | {
        w for ws in SHAPES_WORLD.colour_words.values() for w in ws
    }
    assert not words & shapes_words  # not one shape or colour word of the Shapes world
    for table in (SHIFTED.shape_words, SHIFTED.colour_words, SHIFTED.size_words):
        assert {w for ws in table.values() for w in ws} <= words  # every synonym is used
    questions = [r["question"] for r in read(shifted_train, "vqa")]
    assert {r["kind"] for r in read(shifted_train, "vqa")} == {
        "colour",
        "shape",
        "size",
        "count",
        "exists",
        "relation",
    }
    for q in questions:  # no question is worded as in the Shapes world
        assert not re.match(OLD_QUESTIONS, q), q
    for family in ("q_colour", "q_count", "q_exists_one", "q_relation"):  # and the new templates show up
        heads = {t.split("{")[0] for t in SHIFTED_WORDING[family]}
        assert any(q.startswith(h) for q in questions for h in heads), family


def test_the_same_checker_proves_every_label(shifted_train: Path, tmp_path: Path) -> None:
    assert list(check_dataset(shifted_train)) == []
    folder = tmp_path / "mutated"
    shutil.copytree(shifted_train, folder)
    flips = {"itm.jsonl": ("match", lambda v: not v), "vqa.jsonl": ("answers", lambda a: [a[0] + "x"]),
             "rec.jsonl": ("box", wrong_box)}  # fmt: skip
    for name, (key, change) in flips.items():
        records = [json.loads(line) for line in (folder / name).read_text().splitlines()]
        (folder / name).write_text("".join(json.dumps({**r, key: change(r[key])}) + "\n" for r in records))
    found = [p.split(":")[0] for p in check_dataset(folder)]
    for name in flips:
        assert found.count(name) == len((folder / name).read_text().splitlines()), name


def test_deterministic_and_no_compositional_split(tmp_path: Path) -> None:
    for out in (tmp_path / "a", tmp_path / "b"):
        generate_split(out, seed=3, num_images=6, split="test", progress=False, domain="shifted")
    for p in sorted((tmp_path / "a").rglob("*.*")):
        assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes(), p
    with pytest.raises(ValueError, match="no compositional split"):
        generate_split(tmp_path / "c", seed=3, num_images=6, split="compositional", domain="shifted")
    with pytest.raises(ValueError, match="unknown domain"):
        generate_split(tmp_path / "d", seed=3, num_images=6, split="test", domain="mars")
