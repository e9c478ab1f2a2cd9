"""Render a Shapes scene to an RGB image: textured background, flat-coloured shapes."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cmal.data.scene import Scene, SceneObject

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 50),
    "blue": (35, 70, 215),
    "yellow": (235, 210, 25),
    "purple": (135, 45, 180),
    "orange": (245, 135, 25),
}
COLOUR_JITTER = 14
"""Each channel of an object's colour is shifted by up to this much, per object."""


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Draw ``scene`` on a fresh textured background.

    Args:
        scene: the scene to draw.
        rng: random generator for texture and colour jitter (determinism comes from its seed).
    """
    image = Image.fromarray(_background(scene.size, rng), "RGB")
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        base = np.array(PALETTE[obj.colour])
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
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")
