"""The Shapes generator: per-image contents, balance, variety, determinism, hold-out, speed."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image

from cmal.data.checker import _NP, _REL, _RELATIONS, Scene, check_dataset, parse_np
from cmal.data.generate import TASK_FILES, generate_split
from cmal.data.language import REC_KINDS
from cmal.data.vocab import COLOURS, HELD_OUT_PAIRS, SHAPES

TEXT_FIELD = {
    "captions": "caption",
    "itm": "text",
    "ve": "hypothesis",
    "rec": "expression",
    "vqa": "question",
}


def read(folder: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{task}.jsonl").read_text().splitlines()]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def all_texts(folder: Path) -> list[str]:
    return [r[TEXT_FIELD[t]] for t in TEXT_FIELD for r in read(folder, t)]


def test_writes_images_and_six_files(shapes_train: Path) -> None:
    for task in TASK_FILES:
        assert (shapes_train / f"{task}.jsonl").is_file()
    objects = read(shapes_train, "objects")
    assert len(objects) == 400
    image = Image.open(shapes_train / objects[0]["image"])
    assert image.format == "PNG" and image.size == (128, 128) and image.mode == "RGB"
    for rec in objects:
        assert 2 <= len(rec["objects"]) <= 6
        for o in rec["objects"]:
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
            assert o["tag"] in SHAPES and o["attribute"] in COLOURS


def test_per_image_quotas(shapes_train: Path) -> None:
    per_image: dict[str, Counter[str]] = defaultdict(Counter)
    for task in TEXT_FIELD:
        for rec in read(shapes_train, task):
            per_image[rec["image"]][task] += 1
            if task == "itm":
                per_image[rec["image"]]["itm_pos"] += rec["match"]
            if task == "ve":
                per_image[rec["image"]]["ve_" + rec["label"]] += 1
    assert len(per_image) == 400
    for counts in per_image.values():
        assert counts["captions"] >= 3
        assert counts["itm"] >= 4 and counts["itm_pos"] * 2 == counts["itm"]
        assert counts["ve"] >= 3
        assert counts["rec"] >= 2
        assert counts["vqa"] >= 4


def test_entailment_labels_balanced_within_ten_percent(shapes_train: Path) -> None:
    labels = Counter(r["label"] for r in read(shapes_train, "ve"))
    assert set(labels) == {"entailment", "neutral", "contradiction"}
    assert max(labels.values()) <= 1.1 * min(labels.values())


def test_itm_negatives_are_mostly_hard(shapes_train: Path) -> None:
    negatives = [r for r in read(shapes_train, "itm") if not r["match"]]
    hard = [r for r in negatives if r["kind"] != "foreign"]
    assert len(hard) / len(negatives) > 0.7
    # hard negatives change one attribute, count or relation: every family is represented
    assert {r["kind"] for r in hard} >= {"relation", "count", "attribute", "exists", "listing"}


def test_language_has_variety(shapes_train: Path) -> None:
    text = "\n".join(all_texts(shapes_train))
    words = set(re.findall(r"[a-z]+", text))
    # synonyms and plurals
    assert {"box", "boxes", "disc", "circles", "rhombus", "crosses", "violet"} <= words
    # size words, relations, negation, counting
    assert {"small", "large", "big", "little"} <= words
    for phrase in ("left of", "right of", "above", "below", "there is no", "there are no", "how many"):
        assert phrase in text, phrase
    assert {"two", "three"} <= words
    # several templates per task
    for task, field in TEXT_FIELD.items():
        openings = Counter(" ".join(r[field].split()[:2]) for r in read(shapes_train, task))
        assert len(openings) >= 3, (task, openings)


def test_vqa_covers_question_types_and_answers(shapes_train: Path) -> None:
    vqa = read(shapes_train, "vqa")
    assert {r["kind"] for r in vqa} == {"colour", "shape", "size", "count", "exists", "relation"}
    yes_no = Counter(r["answers"][0] for r in vqa if r["kind"] in ("exists", "relation"))
    assert 0.35 < yes_no["yes"] / (yes_no["yes"] + yes_no["no"]) < 0.65


def test_referring_expressions_of_every_kind(shapes_train: Path) -> None:
    rec = read(shapes_train, "rec")
    assert {r["kind"] for r in rec} == set(REC_KINDS)


def test_about_one_expression_in_five_names_nothing(shapes_train: Path) -> None:
    rec = read(shapes_train, "rec")
    absent = [r for r in rec if r["kind"] == "none"]
    assert all(r["box"] is None for r in absent)
    assert all(r["box"] is not None for r in rec if r["kind"] != "none")
    assert 0.12 < len(absent) / len(rec) < 0.28
    scenes = {r["image"]: Scene(r) for r in read(shapes_train, "objects")}
    assert all(scenes[r["image"]].referent_box(r["expression"]) is None for r in absent)


def test_non_extreme_targets_are_not_the_extreme_of_their_kind(shapes_train: Path) -> None:
    # the target of "the circle left of the square and above the cross" is not the leftmost
    # circle: some other object the head noun describes lies clearly further left
    scenes = {r["image"]: Scene(r) for r in read(shapes_train, "objects")}
    hard = [r for r in read(shapes_train, "rec") if r["kind"] == "non-extreme"]
    assert hard
    for r in hard:
        scene = scenes[r["image"]]
        m = re.fullmatch(rf"the ({_NP}) (?:that is )?({_REL}) the .+ and .+", r["expression"])
        assert m, r["expression"]
        target = scene.resolve(r["expression"])
        assert list(target.box) == r["box"]
        kind, direction = parse_np(m[1]), _RELATIONS[m[2]]
        assert any(scene.rel(o, target, direction) is True for o in scene.matching(kind) if o is not target)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_split(a, seed=5, num_images=40, split="val", progress=False)
    generate_split(b, seed=5, num_images=40, split="val", progress=False)
    generate_split(c, seed=6, num_images=40, split="val", progress=False)
    assert digest(a) == digest(b)
    assert digest(a)["objects.jsonl"] != digest(c)["objects.jsonl"]


def test_extra_relations_add_checked_relation_texts_and_change_nothing_else(tmp_path: Path) -> None:
    plain, extra = tmp_path / "plain", tmp_path / "extra"
    generate_split(plain, seed=5, num_images=60, split="train", progress=False)
    generate_split(extra, seed=5, num_images=60, split="train", progress=False, extra_relations=2)
    for name in ("captions", "ve", "rec", "objects"):
        assert read(plain, name) == read(extra, name)
    for name in ("vqa", "itm"):
        before, after = read(plain, name), read(extra, name)
        added = [r for r in after if r not in before]
        assert [r for r in after if r in before] == before  # every original record, in order
        assert len(added) > 60 and all(r["kind"] == "relation" for r in added)
        for image in {r["image"] for r in added}:  # no text repeats within an image
            texts = [r.get("question") or r.get("text") for r in after if r["image"] == image]
            assert len(texts) == len(set(texts))
    assert {r["match"] for r in read(extra, "itm") if r not in read(plain, "itm")} == {True, False}
    assert digest(plain)["images/000059.png"] == digest(extra)["images/000059.png"]
    assert json.loads((extra / "dataset.json").read_text())["extra_relations"] == 2
    assert "extra_relations" not in json.loads((plain / "dataset.json").read_text())
    assert list(check_dataset(extra)) == []  # the independent label checker agrees with every label


def test_extra_statements_add_checked_texts_of_each_kind_and_change_nothing_else(tmp_path: Path) -> None:
    relations, extra = tmp_path / "relations", tmp_path / "extra"
    generate_split(relations, seed=5, num_images=60, split="train", progress=False, extra_relations=1)
    generate_split(
        extra,
        seed=5,
        num_images=60,
        split="train",
        progress=False,
        extra_relations=1,
        extra_statements={"listing": 2, "count": 1},
    )
    for name in ("captions", "ve", "rec", "objects", "vqa"):
        assert read(relations, name) == read(extra, name)
    before, after = read(relations, "itm"), read(extra, "itm")
    assert [r for r in after if r in before] == before  # every earlier record, in order
    added = [r for r in after if r not in before]
    kinds = Counter((r["kind"], r["match"]) for r in added)
    # per image: a matching and a non-matching listing, and a matching count (fewer only when the
    # scene has no new text of that kind)
    assert kinds[("listing", True)] > 50 and kinds[("listing", False)] > 50 and kinds[("count", True)] > 50
    assert set(kinds) == {("listing", True), ("listing", False), ("count", True)}
    for image in {r["image"] for r in added}:  # no text repeats within an image
        texts = [r["text"] for r in after if r["image"] == image]
        assert len(texts) == len(set(texts))
    meta = json.loads((extra / "dataset.json").read_text())
    assert meta["extra_statements"] == {"listing": 2, "count": 1}
    assert "extra_statements" not in json.loads((relations / "dataset.json").read_text())
    assert list(check_dataset(extra)) == []  # the independent label checker agrees with every label


def test_image_size_is_configurable(tmp_path: Path) -> None:
    generate_split(tmp_path, seed=1, num_images=5, split="test", image_size=96, progress=False)
    rec = read(tmp_path, "objects")[0]
    assert Image.open(tmp_path / rec["image"]).size == (96, 96)
    assert rec["width"] == rec["height"] == 96


def _pairs(folder: Path) -> list[set[tuple[str, str]]]:
    return [{(o["attribute"], o["tag"]) for o in r["objects"]} for r in read(folder, "objects")]


def test_compositional_hold_out(tmp_path: Path, shapes_train: Path, shapes_compositional: Path) -> None:
    for split in ("val", "test"):
        generate_split(tmp_path / split, seed=3, num_images=150, split=split, progress=False)
    for folder in (shapes_train, tmp_path / "val", tmp_path / "test"):
        assert all(not (pairs & HELD_OUT_PAIRS) for pairs in _pairs(folder))
        # not even a false statement or a question names a held-out pair
        for text in all_texts(folder):
            for colour, shape in HELD_OUT_PAIRS:
                assert not re.search(rf"\b{colour} {shape}", text), text
    comp = _pairs(shapes_compositional)
    assert all(pairs & HELD_OUT_PAIRS for pairs in comp)
    assert set().union(*comp) >= HELD_OUT_PAIRS  # every held-out pair shows up


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        generate_split(tmp_path, seed=0, num_images=1, split="dev", progress=False)
    with pytest.raises(ValueError, match="num_images"):
        generate_split(tmp_path, seed=0, num_images=0, split="train", progress=False)
    with pytest.raises(ValueError, match="unknown statement kind 'foreign'"):
        generate_split(
            tmp_path, seed=0, num_images=1, split="train", progress=False, extra_statements={"foreign": 1}
        )
    with pytest.raises(ValueError, match="must not be negative"):
        generate_split(
            tmp_path, seed=0, num_images=1, split="train", progress=False, extra_statements={"count": -1}
        )


@pytest.mark.slow
def test_two_thousand_images_with_every_annotation(tmp_path: Path) -> None:
    # its speed is measured by `time cmal data shapes` (README), not asserted on a shared machine
    summary = generate_split(tmp_path, seed=123, num_images=2000, split="train", progress=False)
    assert summary.images == 2000
    # per image: 3 captions, 4 ITM, 3 VE, 2 grounding, 4 VQA and 1 objects record (README), and
    # half of the images one more grounding expression that names nothing
    per_image = {"captions": 3, "itm": 4, "ve": 3, "rec": 2, "vqa": 4, "objects": 1}
    absent = summary.rec_kinds["none"]
    assert 800 < absent < 1200
    want = {k: 2000 * v + (absent if k == "rec" else 0) for k, v in per_image.items()}
    assert dict(summary.records) == want
