"""Canonical JSONL loaders: valid files load, malformed lines are named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmal.data import formats
from cmal.data.formats import DataError, load


def write(tmp_path: Path, name: str, lines: list[object | str]) -> Path:
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_loads_generated_split(shapes_train: Path) -> None:
    for task in formats.PARSERS:
        records = load(shapes_train / f"{task}.jsonl", task)
        assert records
        assert records[0].image == shapes_train / "images" / "000000.png"
        assert records[0].image.is_file()
    recs = formats.load_rec(shapes_train / "rec.jsonl")
    rec = recs[0]
    assert rec.box is not None and len(rec.box) == 4 and rec.box[2] > rec.box[0]
    assert any(r.box is None for r in recs)  # expressions that name nothing: box null
    vqa = formats.load_vqa(shapes_train / "vqa.jsonl")[0]
    assert isinstance(vqa.answers, tuple) and vqa.answers


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "captions.jsonl", [{"image": "a.png", "caption": "a red circle."}, "", "  "])
    assert len(formats.load_captions(path)) == 1


GOOD = {
    "captions": {"image": "a.png", "caption": "a red circle."},
    "itm": {"image": "a.png", "text": "a red circle.", "match": True},
    "ve": {"image": "a.png", "hypothesis": "a red circle.", "label": "entailment"},
    "rec": {"image": "a.png", "expression": "the red circle", "box": [1, 2, 30, 40]},
    "vqa": {"image": "a.png", "question": "what colour?", "answers": ["red", "red"]},
    "objects": {"image": "a.png", "objects": [{"box": [1, 2, 3, 4], "tag": "circle", "attribute": "red"}]},
}


@pytest.mark.parametrize(
    ("task", "change", "message"),
    [
        ("captions", {"caption": ""}, "field 'caption' is empty"),
        ("captions", {"caption": 3}, "field 'caption' must be a string, got int"),
        ("captions", {"image": None}, "field 'image' must be a string"),
        ("itm", {"match": "yes"}, "field 'match' must be true or false"),
        ("ve", {"label": "maybe"}, "field 'label' must be one of entailment, neutral, contradiction"),
        ("rec", {"box": [1, 2, 3]}, "field 'box' must be a list of 4 numbers"),
        ("rec", {"box": [10, 2, 3, 40]}, "field 'box' .* needs x2 > x1"),
        ("rec", {"box": [-1, 2, 3, 40]}, "field 'box' .* has negative coordinates"),
        ("rec", {"box": [True, 2, 3, 40]}, "field 'box' must be a list of 4 numbers"),
        ("vqa", {"answers": []}, "field 'answers' must be a non-empty list of strings"),
        ("vqa", {"answers": ["red", 2]}, "field 'answers' must hold only non-empty strings"),
        (
            "objects",
            {"objects": [{"box": [1, 2, 3, 4], "tag": "circle"}]},
            "missing field objects\\[0\\].'attribute'",
        ),
        (
            "objects",
            {"objects": [{"box": [1, 2, 3, 4], "tag": "", "attribute": "red"}]},
            "objects\\[0\\].tag",
        ),
        ("objects", {"objects": "none"}, "field 'objects' must be a list"),
    ],
)
def test_malformed_field_names_file_line_and_reason(
    tmp_path: Path, task: str, change: dict[str, object], message: str
) -> None:
    bad = {**GOOD[task], **change}
    path = write(tmp_path, f"{task}.jsonl", [GOOD[task], GOOD[task], bad])
    with pytest.raises(DataError, match=rf"{task}\.jsonl:3: {message}"):
        load(path, task)


@pytest.mark.parametrize("task", list(GOOD))
def test_missing_field(tmp_path: Path, task: str) -> None:
    for key in GOOD[task]:
        bad = {k: v for k, v in GOOD[task].items() if k != key}
        path = write(tmp_path, f"{task}.jsonl", [bad])
        with pytest.raises(DataError, match=rf":1: missing field '{key}'"):
            load(path, task)


def test_invalid_json_and_non_objects(tmp_path: Path) -> None:
    path = write(tmp_path, "itm.jsonl", [GOOD["itm"], '{"image": "a.png", "text": '])
    with pytest.raises(DataError, match=r"itm\.jsonl:2: invalid JSON"):
        load(path, "itm")
    path = write(tmp_path, "ve.jsonl", [[1, 2]])
    with pytest.raises(DataError, match=r"ve\.jsonl:1: expected a JSON object, got list"):
        load(path, "ve")


def test_missing_file_and_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "nope.jsonl", "vqa")
    with pytest.raises(ValueError, match="unknown task"):
        load(tmp_path / "nope.jsonl", "ocr")
