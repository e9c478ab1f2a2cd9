"""Loaders for the six canonical JSONL formats (README, "Data formats"), shared by training and evaluation.

One example a line; image paths are relative to the JSONL file. A malformed line raises
`DataError` naming the file, the line number and what is wrong. Unknown extra fields are allowed
(the Shapes generator adds a few, e.g. ``kind``); missing or mistyped required ones are not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cmal.tasks import VE_LABELS


class DataError(ValueError):
    """A malformed line in a dataset file."""


@dataclass(frozen=True)
class Caption:
    """A ``captions.jsonl`` record: an image and a caption of it."""

    image: Path
    caption: str


@dataclass(frozen=True)
class ItmPair:
    """An ``itm.jsonl`` record: an image, a text, and whether the text matches the image."""

    image: Path
    text: str
    match: bool


@dataclass(frozen=True)
class Entailment:
    """A ``ve.jsonl`` record: an image, a hypothesis and its label (entailment, neutral or contradiction)."""

    image: Path
    hypothesis: str
    label: str


@dataclass(frozen=True)
class Referring:
    """A ``rec.jsonl`` record: an image, an expression, and the box of the one object it names
    (None: it names nothing in the image, and a model should decline)."""

    image: Path
    expression: str
    box: tuple[float, float, float, float] | None
    """(x1, y1, x2, y2) in pixels of the image, or None."""


@dataclass(frozen=True)
class Question:
    """A ``vqa.jsonl`` record: an image, a question and its given answers."""

    image: Path
    question: str
    answers: tuple[str, ...]
    """Given answers; repeats count as votes."""


@dataclass(frozen=True)
class Box:
    """One object of an ``objects.jsonl`` record: (x1, y1, x2, y2) in pixels, tag, attribute (may be None)."""

    box: tuple[float, float, float, float]
    tag: str
    attribute: str | None


@dataclass(frozen=True)
class Objects:
    """An ``objects.jsonl`` record: an image and its objects."""

    image: Path
    objects: tuple[Box, ...]


R = TypeVar("R")


class _Line:
    """Field access on one parsed line, raising `DataError` with its location."""

    def __init__(self, path: Path, lineno: int, data: dict[str, Any]):
        self.path, self.lineno, self.data = path, lineno, data

    def fail(self, what: str) -> DataError:
        return DataError(f"{self.path}:{self.lineno}: {what}")

    def get(self, key: str, data: dict[str, Any] | None = None, where: str = "") -> Any:
        data = self.data if data is None else data
        if key not in data:
            raise self.fail(f"missing field {where}{key!r}")
        return data[key]

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self.fail(f"field {key!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise self.fail(f"field {key!r} is empty")
        return value

    def image(self) -> Path:
        return self.path.parent / self.text("image")

    def box(self, value: Any, key: str = "box") -> tuple[float, float, float, float]:
        if (
            not isinstance(value, list)
            or len(value) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            raise self.fail(f"field {key!r} must be a list of 4 numbers [x1, y1, x2, y2]")
        x1, y1, x2, y2 = (float(v) for v in value)
        if not (x2 > x1 and y2 > y1):
            raise self.fail(f"field {key!r} {value} needs x2 > x1 and y2 > y1")
        if min(x1, y1) < 0:
            raise self.fail(f"field {key!r} {value} has negative coordinates")
        return x1, y1, x2, y2


def _read(path: Path, parse: Callable[[_Line], R]) -> Iterator[R]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(data, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(data).__name__}")
            yield parse(_Line(path, lineno, data))


def _caption(line: _Line) -> Caption:
    return Caption(line.image(), line.text("caption"))


def _itm(line: _Line) -> ItmPair:
    match = line.get("match")
    if not isinstance(match, bool):
        raise line.fail(f"field 'match' must be true or false, got {match!r}")
    return ItmPair(line.image(), line.text("text"), match)


def _ve(line: _Line) -> Entailment:
    label = line.get("label")
    if label not in VE_LABELS:
        raise line.fail(f"field 'label' must be one of {', '.join(VE_LABELS)}, got {label!r}")
    return Entailment(line.image(), line.text("hypothesis"), label)


def _rec(line: _Line) -> Referring:
    box = line.get("box")
    return Referring(line.image(), line.text("expression"), None if box is None else line.box(box))


def _vqa(line: _Line) -> Question:
    answers = line.get("answers")
    if not isinstance(answers, list) or not answers:
        raise line.fail("field 'answers' must be a non-empty list of strings")
    if not all(isinstance(a, str) and a.strip() for a in answers):
        raise line.fail("field 'answers' must hold only non-empty strings")
    return Question(line.image(), line.text("question"), tuple(answers))


def _objects(line: _Line) -> Objects:
    objects = line.get("objects")
    if not isinstance(objects, list):
        raise line.fail("field 'objects' must be a list")
    boxes = []
    for i, o in enumerate(objects):
        if not isinstance(o, dict):
            raise line.fail(f"objects[{i}] must be an object with box, tag, attribute")
        tag = line.get("tag", o, f"objects[{i}].")
        attribute = line.get("attribute", o, f"objects[{i}].")
        if not isinstance(tag, str) or not tag:
            raise line.fail(f"objects[{i}].tag must be a non-empty string")
        if attribute is not None and not isinstance(attribute, str):
            raise line.fail(f"objects[{i}].attribute must be a string or null")
        box = line.box(line.get("box", o, f"objects[{i}]."), key=f"objects[{i}].box")
        boxes.append(Box(box, tag, attribute))
    return Objects(line.image(), tuple(boxes))


PARSERS: dict[str, Callable[[_Line], Any]] = {
    "captions": _caption,
    "itm": _itm,
    "ve": _ve,
    "rec": _rec,
    "vqa": _vqa,
    "objects": _objects,
}
"""Parser per task; the canonical file of task ``t`` is ``t.jsonl``."""


def load(path: str | Path, task: str) -> list[Any]:
    """Load every record of a canonical JSONL file.

    Args:
        path: the JSONL file.
        task: one of ``captions``, ``itm``, ``ve``, ``rec``, ``vqa``, ``objects``.

    Returns:
        A list of the task's record dataclass, image paths resolved against the file's folder.

    Raises:
        DataError: the file is missing or a line is malformed (file, line number and reason).
    """
    if task not in PARSERS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(PARSERS)}")
    return list(_read(Path(path), PARSERS[task]))


def load_captions(path: str | Path) -> list[Caption]:
    """Every record of a ``captions.jsonl`` file (see `load`)."""
    return load(path, "captions")


def load_itm(path: str | Path) -> list[ItmPair]:
    """Every record of an ``itm.jsonl`` file (see `load`)."""
    return load(path, "itm")


def load_ve(path: str | Path) -> list[Entailment]:
    """Every record of a ``ve.jsonl`` file (see `load`)."""
    return load(path, "ve")


def load_rec(path: str | Path) -> list[Referring]:
    """Every record of a ``rec.jsonl`` file (see `load`)."""
    return load(path, "rec")


def load_vqa(path: str | Path) -> list[Question]:
    """Every record of a ``vqa.jsonl`` file (see `load`)."""
    return load(path, "vqa")


def load_objects(path: str | Path) -> list[Objects]:
    """Every record of an ``objects.jsonl`` file (see `load`)."""
    return load(path, "objects")
