"""Scenes of the Shapes world: objects with exact geometry, sampled deterministically.

A scene is the ground truth every label is derived from. Geometry is in pixels of the rendered
image; boxes are ``(x1, y1, x2, y2)`` with the shape covering ``[x1, x2) x [y1, y2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmal.data.domain import SHAPES_WORLD, Domain
from cmal.data.vocab import SIZES

RELATION_MARGIN = 0.1
"""A relation holds when the centres differ by more than this fraction of the image side along its
axis ("left of": ``b.cx - a.cx > margin``). Within the margin neither it nor its opposite holds, and
the generator never states relations there (the pair is ambiguous to a person too)."""

SIZE_RANGES: dict[str, tuple[float, float]] = SHAPES_WORLD.size_ranges
"""Side of an object's box as a fraction of the image side, per size (the Shapes world's; each
domain has its own, `Domain.size_ranges`); the ranges are disjoint."""

MIN_OBJECTS, MAX_OBJECTS = 2, 6
GAP = 2
"""Minimum gap in pixels between any two boxes and between a box and the border."""

RELATIONS: tuple[str, ...] = ("left", "right", "above", "below")
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "above": "below", "below": "above"}


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene.

    Attributes:
        shape: canonical shape (the detector's tag).
        colour: canonical colour (the detector's attribute).
        size: "small" or "large".
        box: (x1, y1, x2, y2) in pixels.
    """

    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]

    @property
    def cx(self) -> float:
        """Centre x in pixels."""
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        """Centre y in pixels (y grows downwards)."""
        return (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class Scene:
    """A whole scene: image side, objects, and the domain it belongs to (words, palette)."""

    size: int
    objects: tuple[SceneObject, ...]
    domain: Domain = SHAPES_WORLD


def relation(a: SceneObject, b: SceneObject, rel: str, image_size: int) -> bool | None:
    """Whether ``a`` is ``rel`` ("left", "right", "above", "below") of ``b``.

    Returns:
        True if it clearly holds, False if the opposite clearly holds, None if the two centres are
        within the margin on that axis (ambiguous).
    """
    margin = RELATION_MARGIN * image_size
    if rel in ("left", "right"):
        d = b.cx - a.cx if rel == "left" else a.cx - b.cx
    else:
        d = b.cy - a.cy if rel == "above" else a.cy - b.cy
    if d > margin:
        return True
    if d < -margin:
        return False
    return None


def allowed_pairs(held_out: bool, domain: Domain = SHAPES_WORLD) -> list[tuple[str, str]]:
    """(colour, shape) pairs a split may draw from: held-out ones only, or all the others."""
    pairs = [(c, s) for c in domain.colours for s in domain.shapes]
    return [p for p in pairs if (p in domain.held_out_pairs) == held_out]


def sample_scene(
    rng: np.random.Generator, image_size: int, compositional: bool, domain: Domain = SHAPES_WORLD
) -> Scene:
    """Sample a scene of 2–6 non-overlapping objects.

    Args:
        rng: the per-image random generator (determinism comes from its seed).
        image_size: side of the square image in pixels.
        compositional: if True, the first object uses a held-out colour–shape pair and the others
            any pair; if False, no object uses a held-out pair.
        domain: the shapes, colours and sizes to draw from.
    """
    regular = allowed_pairs(held_out=False, domain=domain)
    held = allowed_pairs(held_out=True, domain=domain)
    if compositional and not held:
        raise ValueError(f"the {domain.name} domain has no held-out pairs (no compositional split)")
    while True:
        n = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
        objects: list[SceneObject] = []
        for i in range(n):
            if compositional and i == 0:
                colour, shape = held[int(rng.integers(len(held)))]
            elif compositional:
                colour, shape = (regular + held)[int(rng.integers(len(regular) + len(held)))]
            else:
                colour, shape = regular[int(rng.integers(len(regular)))]
            size = SIZES[int(rng.integers(len(SIZES)))]
            box = _place(rng, image_size, domain.size_ranges[size], [o.box for o in objects])
            if box is None:
                break
            objects.append(SceneObject(shape, colour, size, box))
        if len(objects) == n:
            order = rng.permutation(n)  # so the held-out object is not always first
            return Scene(image_size, tuple(objects[int(k)] for k in order), domain)


def _place(
    rng: np.random.Generator,
    image_size: int,
    size_range: tuple[float, float],
    boxes: list[tuple[int, int, int, int]],
) -> tuple[int, int, int, int] | None:
    lo, hi = size_range
    side = round(rng.uniform(lo, hi) * image_size)
    for _ in range(100):
        x1 = int(rng.integers(GAP, image_size - GAP - side + 1))
        y1 = int(rng.integers(GAP, image_size - GAP - side + 1))
        box = (x1, y1, x1 + side, y1 + side)
        if all(_apart(box, other) for other in boxes):
            return box
    return None


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]
