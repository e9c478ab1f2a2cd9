"""Boxes found in the images themselves, for a folder that comes without ``objects.jsonl``.

Some image collections have objects on a background that changes only slowly across the image: a
table top, a studio backdrop, a scan, a rendered scene (both Shapes domains). There, the objects
are the pixels the background cannot explain, and their boxes can be read off the pixels without
any labels. `foreground_boxes`:

1. fits each colour channel with a cubic polynomial in (x, y), robustly: first to the pixels near
   the image's median colour, then three times to the pixels the last fit explains (residual
   under ``max(4 × median residual, 20)``), so objects do not pull the fit;
2. marks as foreground the pixels whose colour is further than ``max(threshold, 6 × median
   residual)`` from the fitted background (RGB distance, 0–255 scale);
3. returns the bounding box of each 8-connected foreground component of at least ``min_pixels``.

The boxes are class-agnostic: they say where objects are, not what they are. They train the
detector's proposals (`cmal train detector --boxes-from foreground`); tags, attributes and region
features are left to fine-tuning. The assumptions are stated, not checked: objects apart from each
other (touching objects become one box), a background that is most of the image, and objects that
differ from it in colour. On busy photographs they do not hold; bring ``objects.jsonl`` there.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

THRESHOLD = 40.0
"""Least RGB distance from the fitted background that counts as an object."""
MIN_PIXELS = 15
"""Smaller components are noise."""
REFITS = 3


def _design(height: int, width: int) -> np.ndarray:
    """The cubic polynomial basis in (x, y) at every pixel, (H·W, 10)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = xx / width - 0.5, yy / height - 0.5
    terms = [np.ones_like(x), x, y, x * x, x * y, y * y, x**3, x * x * y, x * y * y, y**3]
    return np.stack(terms, -1).reshape(-1, len(terms))


def background_residual(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """Each pixel's RGB distance from the robustly fitted background (H, W), and the median
    distance of the pixels the fit explains (the background's own roughness).

    Args:
        pixels: (H, W, 3) colours on a 0–255 scale.
    """
    height, width, _ = pixels.shape
    basis = _design(height, width)
    colours = pixels.reshape(-1, 3).astype(np.float64)
    residual = np.linalg.norm(colours - np.median(colours, 0), axis=1)
    keep = residual < 45.0
    roughness = 0.0
    for _ in range(REFITS):
        if keep.sum() < basis.shape[1]:  # nothing like a background: everything is foreground
            break
        coef, *_ = np.linalg.lstsq(basis[keep], colours[keep], rcond=None)
        residual = np.linalg.norm(colours - basis @ coef, axis=1)
        roughness = float(np.median(residual[keep]))
        keep = residual < max(4.0 * roughness, 20.0)
    return residual.reshape(height, width), roughness


def components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of a boolean mask (H, W): 0 off the mask, else a positive id
    shared by the pixels of a component (label propagation by 3×3 max-pooling)."""
    height, width = mask.shape
    on = torch.from_numpy(mask).view(1, 1, height, width).float()
    labels = torch.arange(1, height * width + 1, dtype=torch.float32).view(1, 1, height, width) * on
    for _ in range(height * width):
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * on
        if torch.equal(grown, labels):
            break
        labels = grown
    return labels[0, 0].long().numpy()


def foreground_boxes(
    pixels: np.ndarray, threshold: float = THRESHOLD, min_pixels: int = MIN_PIXELS
) -> np.ndarray:
    """Class-agnostic object boxes (N, 4) as pixel x1, y1, x2, y2 (x2, y2 exclusive), sorted by
    position, of an image (H, W, 3) on a 0–255 scale (see the module docs)."""
    residual, roughness = background_residual(pixels)
    labels = components(residual > max(threshold, 6.0 * roughness))
    boxes = []
    for label in np.unique(labels[labels > 0]):
        ys, xs = np.nonzero(labels == label)
        if len(ys) >= min_pixels:
            boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return np.array(sorted(boxes), np.float32).reshape(-1, 4)
