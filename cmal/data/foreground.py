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

The boxes say where objects are, not what they are. `foreground_objects` also describes each
object's mask: its outline (`shape_descriptors`, independent of size) and its median colour, which
`cmal.data.found_classes` groups into unnamed classes, and how far its pixels keep from its centre
(`centre_gap`: a ring's hole), which sets how far the detector's colour path looks. Boxes and
classes train the detector's proposals and classifiers (`cmal train detector --boxes-from
foreground`); which words name the classes is left to fine-tuning. The assumptions are stated,
not checked: objects apart from each other (touching objects become one box), a background that
is most of the image, and objects that differ from it in colour. On busy photographs they do not
hold; bring ``objects.jsonl`` there.
"""

from __future__ import annotations

from typing import NamedTuple

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


class FoundObjects(NamedTuple):
    """The objects `foreground_objects` finds in one image, row for row."""

    boxes: np.ndarray  # (N, 4) pixel x1, y1, x2, y2 (x2, y2 exclusive)
    shapes: np.ndarray  # (N, len(SHAPE_DESCRIPTORS)) float32: what its outline looks like
    colours: np.ndarray  # (N, 3) float32: its median colour in [0, 1]
    centre_gaps: np.ndarray  # (N,) float32: pixels from its box centre to its nearest pixel (`centre_gap`)


SHAPE_DESCRIPTORS = ("fill", "filled fill", "hole", "solidity", "centroid dy", "centroid dx", "log aspect")
"""What `shape_descriptors` measures of an object's mask, each independent of its size: the share
of its box the mask covers, the same with holes filled, the share of the filled outline that is
hole, the share of its convex hull the filled outline covers (low for stars and crosses), the
centre of mass's offset from the box centre (fractions of its height and width), and
log(width / height)."""


def _inside(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: every pixel the outside cannot reach around it."""
    outside = np.pad(~mask, 1, constant_values=True)
    labels = components(outside)
    return np.asarray(labels[1:-1, 1:-1] != labels[0, 0])


def _eroded(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` whose four neighbours are in it too (its edge, anti-aliased, left out)."""
    core = np.zeros_like(mask)
    core[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return core


def _cross(o: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> int:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def hull_area(mask: np.ndarray) -> float:
    """The area of the convex hull of a mask's pixels (each a unit square), in pixels."""
    rows = np.flatnonzero(mask.any(1))
    points = set()
    for y in rows:  # a row's first and last pixel hold all of its hull corners
        xs = np.flatnonzero(mask[y])
        for x in (int(xs[0]), int(xs[-1]) + 1):
            points.update({(x, int(y)), (x, int(y) + 1)})
    ordered = sorted(points)
    if len(ordered) < 3:
        return 0.0
    hull: list[tuple[int, int]] = []
    for sweep in (ordered, ordered[::-1]):  # Andrew's monotone chain: lower, then upper half
        start = len(hull)
        for p in sweep:
            while len(hull) - start >= 2 and _cross(hull[-2], hull[-1], p) <= 0:
                hull.pop()
            hull.append(p)
        hull.pop()
    xs, ys = np.array(hull, np.float64).T
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def shape_descriptors(mask: np.ndarray) -> np.ndarray:
    """`SHAPE_DESCRIPTORS` of one object's mask, cropped to its box (H, W) bool."""
    height, width = mask.shape
    area, box = float(mask.sum()), float(height * width)
    filled = float(_inside(mask).sum())
    solidity = filled / hull_area(mask)
    ys, xs = np.nonzero(mask)
    dy, dx = (ys.mean() + 0.5) / height - 0.5, (xs.mean() + 0.5) / width - 0.5
    described = [area / box, filled / box, 1 - area / filled, solidity, dy, dx, np.log(width / height)]
    return np.array(described, np.float32)


def centre_gap(mask: np.ndarray) -> float:
    """How far a mask (H, W) bool, cropped to its box, is from the box centre: the least distance
    (the larger of the row and column offsets, as a square window grows) from the centre to the
    centre of a mask pixel. About 0.5 or less for a filled object; a ring's hole radius for a ring."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    return float(np.maximum(np.abs(ys + 0.5 - height / 2), np.abs(xs + 0.5 - width / 2)).min())


def foreground_objects(
    pixels: np.ndarray, threshold: float = THRESHOLD, min_pixels: int = MIN_PIXELS
) -> FoundObjects:
    """The objects of an image (H, W, 3) on a 0–255 scale (see the module docs), sorted by box:
    their boxes, shape descriptors and colours."""
    residual, roughness = background_residual(pixels)
    labels = components(residual > max(threshold, 6.0 * roughness))
    found = []
    for label in np.unique(labels[labels > 0]):
        ys, xs = np.nonzero(labels == label)
        if len(ys) < min_pixels:
            continue
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        mask = labels[y1:y2, x1:x2] == label
        core = _eroded(mask)
        colour = np.median(pixels[y1:y2, x1:x2][core if core.sum() > 3 else mask], 0) / 255.0
        found.append(((x1, y1, x2, y2), shape_descriptors(mask), colour, centre_gap(mask)))
    found.sort(key=lambda f: f[0])
    return FoundObjects(
        np.array([f[0] for f in found], np.float32).reshape(-1, 4),
        np.array([f[1] for f in found], np.float32).reshape(-1, len(SHAPE_DESCRIPTORS)),
        np.array([f[2] for f in found], np.float32).reshape(-1, 3),
        np.array([f[3] for f in found], np.float32),
    )


def foreground_boxes(
    pixels: np.ndarray, threshold: float = THRESHOLD, min_pixels: int = MIN_PIXELS
) -> np.ndarray:
    """Class-agnostic object boxes (N, 4) as pixel x1, y1, x2, y2 (x2, y2 exclusive), sorted by
    position, of an image (H, W, 3) on a 0–255 scale (see the module docs)."""
    return foreground_objects(pixels, threshold, min_pixels).boxes
