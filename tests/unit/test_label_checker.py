"""Labels proved right by the independent checker, and the checker itself tested by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cmal.data.checker import CheckError, NounPhrase, Scene, check_dataset, listing_items

# A hand-made scene (128 px). Centres: red circle (20,20), blue box (100,20),
# small red circle (20,100), green triangle (60,60).
SCENE = Scene(
    {
        "width": 128,
        "height": 128,
        "objects": [
            {"box": [8, 8, 32, 32], "tag": "circle", "attribute": "red", "size": "large"},
            {"box": [88, 8, 112, 32], "tag": "square", "attribute": "blue", "size": "large"},
            {"box": [14, 94, 26, 106], "tag": "circle", "attribute": "red", "size": "small"},
            {"box": [54, 54, 66, 66], "tag": "triangle", "attribute": "green", "size": "small"},
        ],
    }
)


@pytest.mark.parametrize(
    ("text", "truth"),
    [
        ("there are two circles.", True),
        ("there are three circles.", False),
        ("the image contains two red discs.", True),
        ("there is one box.", True),
        ("two of the shapes are red.", True),
        ("one of the objects is green.", True),
        ("there is no cross.", True),
        ("there are no triangles.", False),
        ("the image does not contain any purple things.", True),
        ("a blue square can be seen.", True),
        ("a violet square is visible.", False),
        ("a red circle is to the left of a blue box.", True),
        ("a blue box is left of a red circle.", False),
        ("above a small red disc there is a big circle.", True),
        ("a small red circle is above a green triangle.", False),
        ("the triangle is green.", True),
        ("the blue object is small.", False),
        ("the big box is made of wood.", None),
        ("a green triangle is heavy.", None),
        ("a picture of four shapes: a red circle, a small red disc, a blue box and a green triangle.", True),
        (
            "a picture of four shapes: a large red circle, a big red disc, a blue box and a green triangle.",
            False,
        ),
        ("a red disc is left of a triangle.", True),
        ("a scene with three objects: a red circle, a blue box and a green triangle.", False),
    ],
)
def test_truth_of_statements(text: str, truth: bool | None) -> None:
    assert SCENE.truth(text) is truth


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("the circle is red.", "matches 2 objects"),  # definite description not unique
        ("the purple box is made of glass.", "matches 0"),
        ("a red circle is hot.", None),  # existing object: fine
        ("a circle is made of wood and rubber.", "cannot parse"),
        ("a orange box is visible.", "wrong article"),
    ],
)
def test_checker_refuses_ambiguity_and_nonsense(text: str, error: str | None) -> None:
    if error is None:
        assert SCENE.truth(text) is None
        return
    with pytest.raises(CheckError, match=error):
        SCENE.truth(text)


def test_listing_items_parses_each_noun_phrase() -> None:
    items = listing_items("a scene with three shapes: a big red circle, a blue square and a triangle.")
    assert items == [
        NounPhrase("circle", "red", "large", plural=False),
        NounPhrase("square", "blue", None, plural=False),
        NounPhrase("triangle", None, None, plural=False),
    ]
    assert listing_items("there are two circles.") is None
    with pytest.raises(CheckError, match="count disagrees"):
        listing_items("a scene with two shapes: a red circle.")


def test_relation_within_margin_is_ambiguous() -> None:
    scene = Scene(
        {
            "objects": [
                {"box": [10, 10, 30, 30], "tag": "circle", "attribute": "red", "size": "large"},
                {"box": [15, 60, 35, 80], "tag": "square", "attribute": "blue", "size": "large"},
            ]
        }
    )
    with pytest.raises(CheckError, match="ambiguous"):
        scene.truth("a red circle is left of a blue square.")
    assert scene.truth("a red circle is above a blue square.") is True


@pytest.mark.parametrize(
    ("expression", "box"),
    [
        ("the blue box", (88, 8, 112, 32)),
        ("the small circle", (14, 94, 26, 106)),
        ("the red circle above the triangle", (8, 8, 32, 32)),
        ("the circle that is below the big red circle", (14, 94, 26, 106)),
        ("the rightmost object", (88, 8, 112, 32)),
        ("the circle that is above the triangle and left of the box", (8, 8, 32, 32)),
        ("the lowest red disc", (14, 94, 26, 106)),
    ],
)
def test_resolve_referring_expressions(expression: str, box: tuple[int, ...]) -> None:
    assert SCENE.resolve(expression).box == box


def test_expressions_that_name_nothing_have_no_referent() -> None:
    assert SCENE.referent_box("the blue box") == [88, 8, 112, 32]
    assert SCENE.referent_box("the big green triangle") is None  # the green triangle is small
    assert SCENE.referent_box("the yellow disc") is None
    with pytest.raises(CheckError):
        SCENE.referent_box("the red circle")  # two of them: neither one object nor none


def test_resolve_refuses_non_unique() -> None:
    with pytest.raises(CheckError):
        SCENE.resolve("the red circle")
    with pytest.raises(CheckError):
        SCENE.resolve("the leftmost circle")  # both circles share x: no clear winner


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("what colour is the triangle?", "green"),
        ("what color is the box?", "blue"),
        ("what shape is the blue object?", "square"),
        ("what kind of shape is the green thing?", "triangle"),
        ("what size is the triangle?", "small"),
        ("is the blue box big or small?", "large"),
        ("how many circles are there?", "2"),
        ("how many purple things can you see?", "0"),
        ("what is the number of red objects?", "2"),
        ("is there a green triangle?", "yes"),
        ("are there any crosses?", "no"),
        ("is the blue box right of the triangle?", "yes"),
        ("is the small circle above the triangle?", "no"),
    ],
)
def test_answers(question: str, answer: str) -> None:
    assert SCENE.answer(question) == answer


def test_every_generated_label_is_right(shapes_train: Path, shapes_compositional: Path) -> None:
    for folder in (shapes_train, shapes_compositional):
        problems = list(check_dataset(folder))
        assert problems == []


def wrong_box(box: list[float] | None) -> list[float]:
    """A wrong grounding label: the box moved by a pixel, or a box for an expression naming nothing."""
    return [0, 0, 5, 5] if box is None else [box[0] + 1, *box[1:]]


def test_checker_catches_wrong_labels(shapes_train: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mutated"
    shutil.copytree(shapes_train, folder)
    flips = {
        "itm.jsonl": ("match", lambda v: not v),
        "ve.jsonl": (
            "label",
            {"entailment": "neutral", "neutral": "contradiction", "contradiction": "entailment"}.get,
        ),
        "rec.jsonl": ("box", wrong_box),
        "vqa.jsonl": ("answers", lambda a: [a[0] + "x"]),
        "captions.jsonl": ("caption", lambda c: c.replace("there is", "there is no", 1)),
    }
    expected = {}
    for name, (key, change) in flips.items():
        path = folder / name
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for r in records:
            r[key] = change(r[key])
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        expected[name] = len(records)
    found: dict[str, int] = {}
    for problem in check_dataset(folder):
        found[problem.split(":")[0]] = found.get(problem.split(":")[0], 0) + 1
    for name in ("itm.jsonl", "ve.jsonl", "rec.jsonl", "vqa.jsonl"):
        assert found[name] == expected[name], name  # every single flipped label is caught
    assert found["captions.jsonl"] > 0
