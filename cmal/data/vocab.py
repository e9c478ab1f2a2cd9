"""The Shapes world's vocabulary: concepts, their surface words, and the compositional hold-out.

The canonical concept names here are the detector's tag and attribute vocabularies. The synonym
and plural tables are what the language generator draws surface words from; the model ships the
same table for anchor detection (`cmal.text.anchors`).
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
"""Object tags, in id order."""

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
"""Object attributes (colours), in id order."""

SIZES: tuple[str, ...] = ("small", "large")

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross",),
}
"""Singular surface words for each shape; the first is the canonical one."""

PLURALS: dict[str, str] = {
    "circle": "circles",
    "disc": "discs",
    "square": "squares",
    "box": "boxes",
    "triangle": "triangles",
    "diamond": "diamonds",
    "rhombus": "rhombuses",
    "cross": "crosses",
    "object": "objects",
    "shape": "shapes",
    "thing": "things",
}

COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple", "violet"),
    "orange": ("orange",),
}

SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big"),
}

GENERIC_NOUNS: tuple[str, ...] = ("object", "shape", "thing")

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")

HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("yellow", "circle"),
        ("red", "square"),
        ("blue", "triangle"),
        ("green", "diamond"),
        ("purple", "cross"),
    }
)
"""(colour, shape) pairs that appear only in the `compositional` split (CLEVR-CoGenT style).

One pair per shape, and orange keeps every shape, so each colour and each shape is still seen in
training; only these combinations are new at test time.
"""


def synonym_table() -> dict[str, str]:
    """Map every surface word (singular or plural) of a shape to its canonical tag.

    Returns:
        A dict such as ``{"box": "square", "boxes": "square", "circles": "circle", ...}``.
    """
    table: dict[str, str] = {}
    for shape, words in SHAPE_WORDS.items():
        for word in words:
            table[word] = shape
            table[PLURALS[word]] = shape
    return table
