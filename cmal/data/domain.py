"""Domains of the generator: the Shapes world the demo model was trained on, and a shifted one.

A domain fixes everything that is not the meaning: which shapes and colours exist, their surface
words, the palette, the background, the default image side, the object sizes, and the wording of
the templates. The meaning (relations, counts, definite descriptions) and the label checker are
shared, so ``cmal data check`` re-derives the labels of either domain.

The ``shifted`` domain is a domain the bundled detector never saw: four other shapes (star,
hexagon, pentagon, ring), five other colours, a bluish blotchy background instead of stripes,
160-pixel images, and other question and statement templates. It exists to measure and
regression-test transfer (`cmal train finetune --adapt-detector`) without outside data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cmal.data import vocab

Wording = dict[str, tuple[str, ...]]

SHAPES_WORDING: Wording = {
    "exists": ("there is {a}.", "the image contains {a}.", "{a} is visible.", "{a} can be seen."),
    "count_many": ("there are {n} {nps}.", "the image contains {n} {nps}.", "{n} {nps} are visible."),
    "listing_head": ("an image with", "a picture of", "a scene with"),
    "q_colour": ("what colour is the {np}?", "what color is the {np}?", "which colour is the {np}?"),
    "q_shape": ("what shape is the {np}?", "what kind of shape is the {np}?"),
    "q_size": ("what size is the {np}?", "is the {np} small or large?", "is the {np} big or small?"),
    "q_count": ("how many {nps} are there?", "how many {nps} can you see?", "what is the number of {nps}?"),
    "q_exists_one": ("is there {a}?",),
    "q_exists_many": ("are there any {nps}?",),
    "q_relation": ("is the {np1} {phrase} the {np2}?",),
}
"""The Shapes world's templates, by family (the generator's original wording)."""

SHIFTED_WORDING: Wording = {
    "exists": ("the picture shows {a}.", "one can spot {a}."),
    "count_many": ("the picture shows {n} {nps}.", "i count {n} {nps}."),
    "listing_head": ("a photo of", "a view of"),
    "q_colour": ("which hue is the {np}?", "what is the colour of the {np}?"),
    "q_shape": ("which shape is the {np}?", "what is the shape of the {np}?"),
    "q_size": ("how big is the {np}?", "what is the size of the {np}?"),
    "q_count": ("how many {nps} are in the picture?", "how many {nps} does the picture show?"),
    "q_exists_one": ("do you see {a}?", "does the picture show {a}?"),
    "q_exists_many": ("are any {nps} present?",),
    "q_relation": (
        "is the {np1} located {phrase} the {np2}?",
        "would you say the {np1} is {phrase} the {np2}?",
    ),
}
"""The shifted domain's templates: the same meanings, other words."""


@dataclass(frozen=True)
class Domain:
    """What a generated world looks like and how it is talked about."""

    name: str
    shapes: tuple[str, ...]  # tags, in id order
    colours: tuple[str, ...]  # attributes, in id order
    shape_words: dict[str, tuple[str, ...]]  # singular surface words per shape
    colour_words: dict[str, tuple[str, ...]]
    size_words: dict[str, tuple[str, ...]]
    plurals: dict[str, str]  # singular noun -> plural (generic nouns included)
    palette: dict[str, tuple[int, int, int]]  # colour -> RGB
    background: str  # "stripes" (pale, neutral) or "blotches" (bluish grey)
    image_size: int  # default image side in pixels
    size_ranges: dict[str, tuple[float, float]]  # box side as a fraction of the image side
    wording: Wording = field(default_factory=lambda: dict(SHAPES_WORDING))
    held_out_pairs: frozenset[tuple[str, str]] = frozenset()  # the compositional hold-out


SHAPES_WORLD = Domain(
    name="shapes",
    shapes=vocab.SHAPES,
    colours=vocab.COLOURS,
    shape_words=vocab.SHAPE_WORDS,
    colour_words=vocab.COLOUR_WORDS,
    size_words=vocab.SIZE_WORDS,
    plurals=vocab.PLURALS,
    palette={
        "red": (215, 35, 35),
        "green": (35, 165, 50),
        "blue": (35, 70, 215),
        "yellow": (235, 210, 25),
        "purple": (135, 45, 180),
        "orange": (245, 135, 25),
    },
    background="stripes",
    image_size=128,
    size_ranges={"small": (0.10, 0.13), "large": (0.19, 0.25)},
    wording=SHAPES_WORDING,
    held_out_pairs=vocab.HELD_OUT_PAIRS,
)
"""The Shapes world (the bundled model's training domain)."""

SHIFTED = Domain(
    name="shifted",
    shapes=("star", "hexagon", "pentagon", "ring"),
    colours=("pink", "cyan", "brown", "black", "lime"),
    shape_words={
        "star": ("star",),
        "hexagon": ("hexagon",),
        "pentagon": ("pentagon",),
        "ring": ("ring", "hoop"),
    },
    colour_words={
        "pink": ("pink", "rose"),
        "cyan": ("cyan", "aqua"),
        "brown": ("brown",),
        "black": ("black",),
        "lime": ("lime",),
    },
    size_words={"small": ("small", "mini"), "large": ("large", "huge")},
    plurals={
        "star": "stars",
        "hexagon": "hexagons",
        "pentagon": "pentagons",
        "ring": "rings",
        "hoop": "hoops",
        "object": "objects",
        "shape": "shapes",
        "thing": "things",
    },
    palette={
        "pink": (240, 120, 185),
        "cyan": (30, 190, 210),
        "brown": (140, 85, 40),
        "black": (35, 35, 40),
        "lime": (140, 215, 30),
    },
    background="blotches",
    image_size=160,
    size_ranges={"small": (0.11, 0.14), "large": (0.20, 0.26)},
    wording=SHIFTED_WORDING,
)
"""A domain the bundled detector never saw (other shapes, colours, background, size, wording)."""

DOMAINS: dict[str, Domain] = {d.name: d for d in (SHAPES_WORLD, SHIFTED)}


def get_domain(name: str) -> Domain:
    """The domain called ``name``; `ValueError` naming the choices otherwise."""
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; choose from {', '.join(DOMAINS)}")
    return DOMAINS[name]
