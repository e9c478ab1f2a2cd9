"""Classes for boxes found in the pixels: grouped (`cmal.data.found_classes`), named from the
folder's texts (`cmal.data.found_names`), and put in a detector's vocabularies.

`find_vocabularies` turns the objects of a training folder into classes the detector's tag
(shape) and attribute (colour) classifiers learn: a named class is the tag or attribute of that
name (one the starting detector already has keeps its classifier row), an unnamed one is
``found-shape-N`` / ``found-colour-N``. `label_found_classes` labels any folder's found objects
with them, and `add_found_words` gives the model directory the names' synonyms, so fine-tuning
anchors the new regions to the words of the texts, and the size words `found_size_words` reads
off the texts. `colour_window` widens the detector's colour path for hollow objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmal.data.found_classes import FoundClasses, find_classes
from cmal.data.found_names import class_mentions, name_classes
from cmal.data.found_sizes import FoundObject, find_size_words
from cmal.data.vocab import GENERIC_NOUNS
from cmal.detector.data import DetectionSet, FoundDescriptors
from cmal.model_dir import LABELS, SYNONYMS, Vocabularies, read_json, update_labels, write_json
from cmal.text.sizes import size_class

FOUND_PREFIX = "found-"
"""What the names of classes found in the pixels but named by no word start with."""


@dataclass
class FoundKind:
    """The classes of one kind of descriptor (shape or colour) and where they go in a vocabulary."""

    grouping: FoundClasses
    names: list[str]  # per class
    ids: np.ndarray  # per class: its index in the vocabulary
    synonyms: dict[str, str] = field(default_factory=dict)  # other words naming a class -> its name

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` records of it."""
        return {"classes": self.grouping.count, "silhouette": round(self.grouping.silhouette, 4),
                "names": self.names, "synonyms": self.synonyms}  # fmt: skip


GAP_PERCENTILE = 99
"""The share (percent) of found objects whose pixels the colour window must reach from their centre."""


def colour_window(found: FoundDescriptors, stride: int) -> int:
    """The colour path's window (`DetectorConfig.colour_window`, cells a side) that reaches, from an
    object's centre cell, a pixel of all but the farthest 1% of the found objects: a ring's colour,
    not its hole's. 3, the default, for filled objects; at least 3 (the centre cell's neighbours)."""
    gaps = np.concatenate(found.centre_gaps) if found.centre_gaps else np.zeros(0)
    reach = float(np.percentile(gaps, GAP_PERCENTILE)) if len(gaps) else 0.0
    return 2 * max(1, math.ceil(reach / stride)) + 1


def without_found(names: list[str]) -> list[str]:
    """A vocabulary without the unnamed classes an earlier detector found (found again instead)."""
    return [n for n in names if not n.startswith(FOUND_PREFIX)]


def _kind(
    kind: str, known: list[str], per_image: list[np.ndarray], paths: list[Path], texts: list[tuple[Path, str]]
) -> tuple[list[str], FoundKind]:
    grouping = find_classes(np.concatenate(per_image))
    classes_of = {str(p): grouping.assign(d) for p, d in zip(paths, per_image, strict=True)}
    named = name_classes(class_mentions(texts, classes_of), grouping.count)
    names = [n or f"{FOUND_PREFIX}{kind}-{i + 1}" for i, n in enumerate(named.names)]
    vocabulary = [*known, *(n for n in dict.fromkeys(names) if n not in known)]
    ids = np.array([vocabulary.index(n) for n in names], np.int64)
    return vocabulary, FoundKind(grouping, names, ids, named.synonyms)


def find_vocabularies(
    found: FoundDescriptors, texts: list[tuple[Path, str]], tags: list[str], attributes: list[str]
) -> tuple[list[str], list[str], FoundKind, FoundKind]:
    """Group the found objects by outline and by colour, name the groups from the texts of their
    folder (`folder_texts`), and extend the vocabularies ``tags`` and ``attributes`` with them."""
    tags, shapes = _kind("shape", tags, found.shapes, found.paths, texts)
    attributes, colours = _kind("colour", attributes, found.colours, found.paths, texts)
    return tags, attributes, shapes, colours


def model_size_classes(model_dir: Path | None) -> list[tuple[str, float | None]]:
    """A model directory's size classes (its ``labels.json``; none without one)."""
    return Vocabularies.load(model_dir).size_classes if model_dir and (model_dir / LABELS).is_file() else []


def found_size_words(
    found: FoundDescriptors,
    texts: list[tuple[Path, str]],
    shapes: FoundKind,
    colours: FoundKind,
    size_classes: Sequence[tuple[str, float | None]],
) -> dict[str, str]:
    """The words of ``texts`` that say the found objects' sizes (`cmal.data.found_sizes`), each
    object's size class read from its box against ``size_classes`` (a model's; none: no words)."""
    if not size_classes:
        return {}
    objects_of: dict[str, list[FoundObject]] = {}
    for path, shape, colour, sides in zip(found.paths, found.shapes, found.colours, found.sides, strict=True):
        kinds = zip(shapes.grouping.assign(shape), colours.grouping.assign(colour), sides, strict=True)
        objects_of[str(path)] = [
            FoundObject(shapes.names[s], colours.names[c], size_class(float(side), size_classes) or "")
            for s, c, side in (kinds if len(shape) else ())
        ]
    shape_words = {**{n: n for n in shapes.names}, **shapes.synonyms}
    colour_words = {**{n: n for n in colours.names}, **colours.synonyms}
    described = ((text, objects_of.get(str(path), [])) for path, text in texts)
    return find_size_words(described, shape_words, colour_words, GENERIC_NOUNS)


def label_found_classes(
    data: DetectionSet, found: FoundDescriptors, shapes: FoundKind, colours: FoundKind
) -> None:
    """Give each found object of ``data`` (in place) the tag of its shape class and the attribute
    of its colour class."""
    for i, (shape, colour) in enumerate(zip(found.shapes, found.colours, strict=True)):
        if len(shape):
            data.tags[i] = shapes.ids[shapes.grouping.assign(shape)]
            data.attributes[i] = colours.ids[colours.grouping.assign(colour)]


def add_found_words(
    out_dir: Path, shapes: FoundKind, colours: FoundKind, size_words: Mapping[str, str]
) -> None:
    """Give a model directory's CMAL vocabularies (when it has them) the found names' synonyms
    (``synonyms.json``) and, if it anchors attributes at all, the colour words
    (``labels.json``'s ``attribute_words``), and if it reads sizes, the size words
    (``size_words``); words it already knows keep their meaning."""
    if (out_dir / SYNONYMS).is_file():
        synonyms = read_json(out_dir / SYNONYMS)
        named = {n: n for n in shapes.names if not n.startswith(FOUND_PREFIX)}
        write_json(out_dir / SYNONYMS, {**named, **shapes.synonyms, **synonyms})
    labels = read_json(out_dir / LABELS) if (out_dir / LABELS).is_file() else {}
    grown = {}
    if labels.get("attribute_words"):
        named = {n: n for n in colours.names if not n.startswith(FOUND_PREFIX)}
        grown["attribute_words"] = {**named, **colours.synonyms, **labels["attribute_words"]}
    if labels.get("size_words"):
        grown["size_words"] = {**size_words, **labels["size_words"]}
    if grown:
        update_labels(out_dir, **grown)
