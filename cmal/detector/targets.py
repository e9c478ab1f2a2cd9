"""Training targets for the detector: Gaussian centre heatmaps and per-object regression labels."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Targets(NamedTuple):
    """Detector training targets for a batch of B images, objects padded to M per image."""

    heat: torch.Tensor  # (B, 1, h, w) in [0, 1], exactly 1 at object centres
    centre: torch.Tensor  # (B, M) int64 flat cell index of each object's centre (0 where padded)
    mask: torch.Tensor  # (B, M) bool: real object
    size: torch.Tensor  # (B, M, 2) box width, height in cells
    offset: torch.Tensor  # (B, M, 2) centre offset within its cell
    tag: torch.Tensor  # (B, M) int64
    attribute: torch.Tensor  # (B, M) int64


def build_targets(
    boxes: list[np.ndarray],
    tags: list[np.ndarray],
    attributes: list[np.ndarray],
    image_size: int,
    stride: int,
) -> Targets:
    """Targets for a batch.

    Args:
        boxes: per image, (N_i, 4) pixel boxes in the (resized) input image.
        tags: per image, (N_i,) tag ids.
        attributes: per image, (N_i,) attribute ids.
        image_size: input side in pixels.
        stride: output stride.
    """
    b = len(boxes)
    cells = image_size // stride
    m = max(1, max(len(x) for x in boxes))
    heat = np.zeros((b, 1, cells, cells), np.float32)
    centre = np.zeros((b, m), np.int64)
    mask = np.zeros((b, m), bool)
    size = np.zeros((b, m, 2), np.float32)
    offset = np.zeros((b, m, 2), np.float32)
    tag = np.zeros((b, m), np.int64)
    attribute = np.zeros((b, m), np.int64)
    ys, xs = np.mgrid[0:cells, 0:cells].astype(np.float32)
    for i, bx in enumerate(boxes):
        for j, (x1, y1, x2, y2) in enumerate(bx):
            cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
            ix, iy = min(int(cx), cells - 1), min(int(cy), cells - 1)
            w, h = (x2 - x1) / stride, (y2 - y1) / stride
            sigma = max(min(w, h) / 6.0, 0.5)
            g = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
            np.maximum(heat[i, 0], g, out=heat[i, 0])
            centre[i, j] = iy * cells + ix
            mask[i, j] = True
            size[i, j] = (w, h)
            offset[i, j] = (cx - ix, cy - iy)
            tag[i, j] = tags[i][j]
            attribute[i, j] = attributes[i][j]
    return Targets(*(torch.from_numpy(a) for a in (heat, centre, mask, size, offset, tag, attribute)))
