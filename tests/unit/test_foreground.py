"""Boxes found in the pixels (`cmal.data.foreground`): exact on drawn scenes, none on a bare
background, and on both rendered domains one box per labelled object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmal.data.foreground import components, foreground_boxes
from cmal.data.formats import load_objects
from cmal.data.generate import generate_split
from cmal.imaging import iou, load_rgb


def slope(size: int = 96) -> np.ndarray:
    """A background brightening from left to right and from top to bottom, with pixel noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = 150.0 + 30.0 * xx / size + 20.0 * yy / size
    return np.clip(base[..., None] + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.float32)


def test_two_drawn_objects_are_found_exactly() -> None:
    image = slope()
    image[10:25, 60:80] = (200, 40, 40)  # a red bar
    image[50:70, 20:40] = (20, 20, 20)  # a black square...
    image[55:65, 25:35] = image[55, 10]  # ...with a hole of background: still one object (a ring)
    assert foreground_boxes(image).tolist() == [[20, 50, 40, 70], [60, 10, 80, 25]]


def test_a_bare_background_has_no_objects() -> None:
    assert foreground_boxes(slope()).shape == (0, 4)


def test_specks_under_the_size_floor_are_noise() -> None:
    image = slope()
    image[40:43, 40:43] = (0, 0, 0)  # 9 pixels
    assert foreground_boxes(image).shape == (0, 4)
    assert foreground_boxes(image, min_pixels=9).tolist() == [[40, 40, 43, 43]]


def test_components_join_diagonal_neighbours_only() -> None:
    mask = np.zeros((5, 6), bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal: one component
    mask[3, 4] = mask[3, 5] = True  # another
    labels = components(mask)
    assert labels[0, 0] == labels[1, 1] > 0
    assert labels[3, 4] == labels[3, 5] > 0 and labels[3, 4] != labels[0, 0]
    assert (labels[~mask] == 0).all()


@pytest.mark.parametrize("domain", ["shapes", "shifted"])
def test_every_labelled_object_is_found_once(domain: str, tmp_path: Path) -> None:
    generate_split(tmp_path, seed=7, num_images=12, split="test", progress=False, domain=domain)
    for record in load_objects(tmp_path / "objects.jsonl"):
        found = foreground_boxes(np.asarray(load_rgb(record.image), np.float32))
        truth = np.array([o.box for o in record.objects], np.float32)
        assert len(found) == len(truth), record.image
        overlaps = iou(found, truth)
        assert (overlaps.max(0) >= 0.8).all(), (record.image, overlaps.max(0))
