"""Names for found classes from the texts (`cmal.data.found_names`, `cmal.detector.found`): the
claiming rule on made-up texts, and on a rendered shifted split every shape and colour named by
its own word, with the domain's synonyms."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cmal.data.found_names import (
    MIN_MENTIONS,
    claimed_classes,
    folder_texts,
    name_classes,
    words,
    words_in_order,
)
from cmal.data.found_sizes import FoundObject, find_size_words, phrase_sizes
from cmal.data.generate import generate_split
from cmal.detector.data import foreground_detection_set
from cmal.detector.found import FOUND_PREFIX, find_vocabularies, found_size_words, label_found_classes
from cmal.imaging import iou


def test_claimed_classes_in_order_of_lift_until_covered() -> None:
    present = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]], bool)  # two classes share the word
    everywhere = np.concatenate([present, np.zeros((4, 3), bool)])  # and are absent without it
    assert claimed_classes(np.array([1.5, 1.2, 0.5]), present, everywhere) == [0, 1]
    assert (
        claimed_classes(np.array([1.5, 1.05, 0.5]), present, everywhere) == []
    )  # the second lifts too little
    assert claimed_classes(np.array([1.2, 1.2, 0.5]), present, everywhere) == []  # the first lifts too little
    assert claimed_classes(np.array([1.5, 0.0, 0.0]), present[[0, 2]], everywhere) == [
        0
    ]  # one class covers all
    # classes covering the word's texts but nearly every other text too: the word is not their name
    common = np.concatenate([present, np.ones((4, 3), bool)])
    assert claimed_classes(np.array([1.5, 1.2, 0.5]), present, common) == []


def test_names_and_synonyms_from_made_up_texts() -> None:
    """Class 0 is red things, classes 1 and 2 are balls of two sizes; "crimson" also means red;
    "the" goes with everything and "rare" is mentioned too seldom."""
    rng = np.random.default_rng(0)
    mentions = []
    for i in range(400):
        classes = frozenset(int(c) for c in np.flatnonzero(rng.random(3) < 0.5)) or frozenset({0})
        said = {"the"}
        if 0 in classes:
            said.add("red" if i % 3 else "crimson")
        if classes & {1, 2}:
            said.add("ball")
        if i < MIN_MENTIONS - 1 and 0 in classes:
            said.add("rare")
        mentions.append((frozenset(said), classes))
    named = name_classes(mentions, 4)  # class 3 is never present
    assert named.names == ["red", "ball", "ball", ""]
    assert named.synonyms == {"crimson": "red"}
    assert words("Is the Red ball left of 2 balls?") == {"is", "the", "red", "ball", "left", "of", "balls"}


def test_a_rare_part_of_a_kind_takes_its_name() -> None:
    """Every "ball" text goes with large balls (class 0), so "ball" claims them alone; small balls
    (class 1), seen mostly beside large ones, take the name that lifts them most."""
    rng = np.random.default_rng(1)
    mentions = []
    for _ in range(600):
        large, cube = rng.random() < 0.5, rng.random() < 0.5
        small = rng.random() < (0.1 if large else 0.04)
        classes = frozenset(k for k, here in enumerate((large, small, cube)) if here)
        said = {"a", "ball"} if large else {"a", "cube"} if cube else {"a"}
        mentions.append((frozenset(said), classes))
    named = name_classes(mentions, 3)
    assert named.names == ["ball", "ball", "cube"] and named.synonyms == {}


def test_size_words_from_made_up_texts() -> None:
    """Each image holds a large red ball, a small one or both; "huge" is said only of an image
    with a large one, "mini" only of one with a small one, "the" of any."""
    big, small = FoundObject("ball", "red", "large"), FoundObject("ball", "red", "small")
    said = words_in_order("is the huge red ball left of a thing, how many red things or blue balls")
    phrases = phrase_sizes(said, [big, small], {"ball": "ball"}, {"red": "red", "blue": "blue"}, ("thing",))
    # "a thing" names no colour or shape; "blue balls" match nothing
    assert phrases == [("huge", frozenset({"large", "small"})), ("many", frozenset({"large", "small"}))]
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(60):
        objects = [o for o in (big, small) if rng.random() < 0.5] or [big]
        said = ["the red ball"]
        said += ["a huge red ball"] if big in objects else []
        said += ["a mini red ball"] if small in objects else []
        texts += [(f"is {phrase} here", objects) for phrase in said]
    found = find_size_words(texts, {"ball": "ball"}, {"red": "red"}, ())
    assert found == {"huge": "large", "mini": "small"}  # "the" and "a" go with both sizes


@pytest.mark.slow
def test_shifted_shapes_and_colours_named_by_their_words(tmp_path: Path) -> None:
    generate_split(tmp_path, seed=9, num_images=400, split="train", progress=False, domain="shifted")
    (tmp_path / "alone").mkdir()  # the questions and images alone: no boxes, no labels
    (tmp_path / "alone" / "images").symlink_to(tmp_path / "images")
    (tmp_path / "alone" / "vqa.jsonl").write_text((tmp_path / "vqa.jsonl").read_text())
    data, found = foreground_detection_set(tmp_path / "alone", 128, progress=False)
    texts = folder_texts(tmp_path / "alone")
    tags, attributes, shapes, colours = find_vocabularies(found, texts, ["circle"], ["red"])
    label_found_classes(data, found, shapes, colours)

    lines = (tmp_path / "objects.jsonl").read_text().splitlines()
    truth = {Path(r["image"]).name: r["objects"] for r in map(json.loads, lines)}
    pairs: Counter[tuple[str, str]] = Counter()
    for path, boxes, t, a in zip(found.paths, data.original_boxes, data.tags, data.attributes, strict=True):
        objects = truth[path.name]
        nearest = iou(boxes, np.array([o["box"] for o in objects], np.float32)).argmax(1)
        for j, tag, attribute in zip(nearest, t, a, strict=True):
            pairs[objects[j]["tag"], tags[tag]] += 1
            pairs[objects[j]["attribute"], attributes[attribute]] += 1
    assert all(said == true for true, said in pairs), pairs  # every found object named by its own word
    assert tags[:1] == ["circle"] and attributes[:1] == ["red"]  # the known classes come first
    assert sorted(tags[1:]) == ["hexagon", "pentagon", "ring", "star"]
    assert sorted(attributes[1:]) == ["black", "brown", "cyan", "lime", "pink"]
    assert not any(n.startswith(FOUND_PREFIX) for n in shapes.names + colours.names)
    assert shapes.synonyms.get("hoop") == "ring" and colours.synonyms.get("rose") == "pink"
    # and the sizes: the domain's words for them, "huge" and "mini" beside "large" and "small"
    size_words = found_size_words(found, texts, shapes, colours, [("small", 0.16), ("large", None)])
    assert size_words == {"huge": "large", "large": "large", "mini": "small", "small": "small"}
    assert found_size_words(found, texts, shapes, colours, []) == {}  # a model without size classes
