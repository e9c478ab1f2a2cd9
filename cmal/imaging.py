"""Image decoding and resizing shared by training, evaluation and the service (numpy + Pillow only).

The detector sees every image resized to ``size x size`` (aspect ratio not kept); boxes are
predicted normalised to [0, 1] and mapped back to the original pixels with `boxes_to_pixels`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def load_rgb(source: str | Path | bytes) -> Image.Image:
    """Open an image file or bytes as RGB (fully decoded, so truncation shows up here)."""
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.load()
    return image.convert("RGB")


def to_input(image: Image.Image, size: int) -> np.ndarray:
    """Resize to ``size x size`` and return (3, size, size) float32 RGB in [0, 1]."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def boxes_to_pixels(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised (…, 4) x1, y1, x2, y2 boxes -> pixels of a ``width x height`` image."""
    return np.asarray(boxes * np.array([width, height, width, height], dtype=boxes.dtype))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x1, y1, x2, y2 boxes -> (N, M)."""
    a = a[:, None, :]
    b = b[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return np.asarray(inter / np.maximum(area_a + area_b - inter, 1e-9))
