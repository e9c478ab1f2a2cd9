"""Render a scene to an RGB image: textured background, flat-coloured shapes (in the scene's domain's
palette and background style)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cmal.data.domain import SHAPES_WORLD
from cmal.data.scene import Scene, SceneObject

PALETTE: dict[str, tuple[int, int, int]] = SHAPES_WORLD.palette
"""The Shapes world's colours (each domain has its own, `Domain.palette`)."""
COLOUR_JITTER = 14
"""Each channel of an object's colour is shifted by up to this much, per object."""


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Draw ``scene`` on a fresh textured background.

    Args:
        scene: the scene to draw.
        rng: random generator for texture and colour jitter (determinism comes from its seed).
    """
    paint = _blotches if scene.domain.background == "blotches" else _background
    image = Image.fromarray(paint(scene.size, rng), "RGB")
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        base = np.array(scene.domain.palette[obj.colour])
        jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
        fill = tuple(int(v) for v in np.clip(base + jitter, 0, 255))
        _draw_shape(draw, obj, fill)
    return image


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A pale, low-saturation texture: base tone + oriented stripes + pixel noise. (H, W, 3) uint8."""
    base = rng.uniform(175, 230) + rng.uniform(-12, 12, size=3)  # (3,)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 24)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    texture = rng.uniform(3, 10) * stripes[..., None]
    noise = rng.normal(0, 5, size=(size, size, 3))
    return np.asarray(np.clip(base + texture + noise, 0, 255).astype(np.uint8))


def _blotches(size: int, rng: np.random.Generator) -> np.ndarray:
    """A bluish-grey texture (the shifted domain): tinted base tone + a few soft blotches + pixel noise."""
    base = rng.uniform(165, 210) + np.array([-14.0, -2.0, 16.0]) + rng.uniform(-6, 6, size=3)  # (3,)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shade = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0, size, size=2)
        radius = rng.uniform(0.1, 0.35) * size
        shade += rng.uniform(-18, 18) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    noise = rng.normal(0, 4, size=(size, size, 3))
    return np.asarray(np.clip(base + shade[..., None] + noise, 0, 255).astype(np.uint8))


def _polygon(
    cx: float, cy: float, radius: float, corners: int, inner: float = 1.0
) -> list[tuple[float, float]]:
    """A regular polygon (``inner`` < 1: a star, every other corner at ``inner`` x the radius), top up."""
    steps = corners * (2 if inner < 1.0 else 1)
    return [
        (
            cx + radius * (inner if i % 2 and inner < 1.0 else 1.0) * np.sin(2 * np.pi * i / steps),
            cy - radius * (inner if i % 2 and inner < 1.0 else 1.0) * np.cos(2 * np.pi * i / steps),
        )
        for i in range(steps)
    ]


def _draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject, fill: tuple[int, ...]) -> None:
    x1, y1, x2, y2 = obj.box
    # PIL's coordinates are inclusive: the last covered pixel is x2 - 1.
    r, b = x2 - 1, y2 - 1
    cx, cy = (x1 + r) / 2, (y1 + b) / 2
    if obj.shape == "circle":
        draw.ellipse((x1, y1, r, b), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x1, y1, r, b), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, y1), (r, b), (x1, b)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y1), (r, cy), (cx, b), (x1, cy)], fill=fill)
    elif obj.shape == "cross":
        t = (x2 - x1) / 6  # half the bar thickness: bars are a third of the side
        draw.rectangle((x1, cy - t, r, cy + t), fill=fill)
        draw.rectangle((cx - t, y1, cx + t, b), fill=fill)
    elif obj.shape == "star":
        draw.polygon(_polygon(cx, cy, (r - x1) / 2, 5, inner=0.45), fill=fill)
    elif obj.shape == "hexagon":
        draw.polygon(_polygon(cx, cy, (r - x1) / 2, 6), fill=fill)
    elif obj.shape == "pentagon":
        draw.polygon(_polygon(cx, cy, (r - x1) / 2, 5), fill=fill)
    elif obj.shape == "ring":
        draw.ellipse((x1, y1, r, b), outline=fill, width=max(2, round((x2 - x1) / 5)))
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")
