"""Size classes of regions, for strict anchors: the boundaries between "small" and "large" boxes
fitted on a training split's annotated boxes, and a region's class read from its detected box."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cmal.data.vocab import SIZE_WORDS, SIZES
from cmal.model_dir import Vocabularies

OBJECTS = "objects.jsonl"  # a split's annotated boxes


def size_class(side: float, classes: Sequence[tuple[str, float | None]]) -> str | None:
    """The size class of a box whose longer side is ``side`` (a share of the image's longer side)."""
    for name, largest in classes:
        if largest is None or side <= largest:
            return name
    return None


def fit_size_classes(
    sides: Mapping[str, Sequence[float]], order: Sequence[str]
) -> list[tuple[str, float | None]]:
    """Size classes (``order``, small to large) from annotated boxes' longer sides by class: each
    boundary halfway between the largest box of one class and the smallest of the next (between
    their medians when they overlap). Empty when a class has no boxes."""
    if any(not sides.get(name) for name in order):
        return []
    classes: list[tuple[str, float | None]] = []
    for lower, upper in itertools.pairwise(order):
        a, b = max(sides[lower]), min(sides[upper])
        if a >= b:
            a, b = float(np.median(sides[lower])), float(np.median(sides[upper]))
        classes.append((lower, round((a + b) / 2, 4)))
    return [*classes, (order[-1], None)]


def size_vocabulary(
    objects: Path, old: Vocabularies | None
) -> tuple[dict[str, str], list[tuple[str, float | None]]]:
    """Size words and size classes for strict anchors: a model's own (``old``) when it has them,
    else fitted on the annotated boxes in ``objects`` (none when that file is missing)."""
    if old is not None and old.size_classes:
        return old.size_words, old.size_classes
    if not objects.is_file():
        return {}, []
    sides: dict[str, list[float]] = {name: [] for name in SIZES}
    for line in objects.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        longer = max(record["width"], record["height"])
        for o in record["objects"]:
            x1, y1, x2, y2 = o["box"]
            if o.get("size") in sides:
                sides[o["size"]].append(max(x2 - x1, y2 - y1) / longer)
    classes = fit_size_classes(sides, SIZES)
    words = dict(sorted((w, s) for s in SIZES for w in SIZE_WORDS.get(s, (s,)))) if classes else {}
    return words, classes
