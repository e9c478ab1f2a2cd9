"""Classes found among the objects found in the pixels (`cmal.data.found_classes`): the outline
descriptors on drawn masks, k-means and the silhouette on known points, and on both rendered
domains one class never holding two labelled shapes or colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmal.data.foreground import (
    SHAPE_DESCRIPTORS,
    centre_gap,
    foreground_objects,
    hull_area,
    shape_descriptors,
)
from cmal.data.formats import load_objects
from cmal.data.found_classes import find_classes, kmeans, silhouette
from cmal.data.generate import generate_split
from cmal.detector.data import FoundDescriptors
from cmal.detector.found import colour_window
from cmal.imaging import iou, load_rgb


def named(mask: np.ndarray) -> dict[str, float]:
    return dict(zip(SHAPE_DESCRIPTORS, shape_descriptors(mask).tolist(), strict=True))


def test_outline_descriptors_of_drawn_masks() -> None:
    square = named(np.ones((10, 10), bool))
    assert square == {"fill": 1.0, "filled fill": 1.0, "hole": 0.0, "solidity": 1.0, "centroid dy": 0.0,
                      "centroid dx": 0.0, "log aspect": 0.0}  # fmt: skip
    frame = np.ones((10, 10), bool)
    frame[3:7, 3:7] = False  # a 4x4 hole in a 10x10 square
    ring = named(frame)
    assert ring["fill"] == pytest.approx(0.84) and ring["filled fill"] == 1.0
    assert ring["hole"] == pytest.approx(0.16) and ring["solidity"] == 1.0  # holes filled first
    triangle = np.tril(np.ones((10, 10), bool))  # the right angle at the bottom left
    corner = named(triangle)
    assert corner["fill"] == pytest.approx(0.55) and corner["hole"] == 0.0
    assert hull_area(triangle) == 59.5  # the staircase's hull: the triangle plus half a pixel a row
    assert corner["solidity"] == pytest.approx(55 / 59.5)
    assert corner["centroid dy"] > 0 and corner["centroid dx"] < 0  # mass low and to the left
    assert named(np.ones((5, 20), bool))["log aspect"] == pytest.approx(np.log(4))
    plus = np.zeros((9, 9), bool)
    plus[3:6] = plus[:, 3:6] = True  # 45 pixels; its hull cuts the four corners: 81 - 4 * 4.5
    assert hull_area(plus) == 63.0 and named(plus)["solidity"] == pytest.approx(45 / 63)


def test_centre_gap_and_the_colour_window_it_sets() -> None:
    assert centre_gap(np.ones((10, 10), bool)) == 0.5  # the centre pixel's centre, half a pixel off
    frame = np.ones((10, 10), bool)
    frame[3:7, 3:7] = False  # the nearest pixels, row 2 and column 2, are 2.5 from the centre (5, 5)
    assert centre_gap(frame) == 2.5

    def window(*gaps: float) -> int:
        found = FoundDescriptors([], [], [], [np.array(gaps, np.float32)], [])
        return colour_window(found, stride=4)

    assert window(0.5, 0.4) == 3  # filled objects: the centre cell's neighbours, the default
    assert window(0.5, 4.0) == 3  # one cell (4 px) each way reaches 4 px
    assert window(0.5, 7.6) == 5  # a ring whose hole is 7.6 px: two cells each way
    assert window(*[0.5] * 200, 30.0) == 3  # the farthest 1% is left out
    assert colour_window(FoundDescriptors([], [], [], [], []), stride=4) == 3  # nothing found


def test_silhouette_of_two_tight_groups() -> None:
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    labels = np.array([0, 0, 1, 1])
    # point 0: a = 1 (its own group, itself left out), b = mean(10, 11) = 10.5; the others alike
    expected = np.mean([(10.5 - 1) / 10.5, (9.5 - 1) / 9.5, (9.5 - 1) / 9.5, (10.5 - 1) / 10.5])
    assert silhouette(x, labels) == pytest.approx(expected)
    assert silhouette(x, np.array([0, 1, 0, 1])) < 0  # a grouping across the gap scores below zero


def test_find_classes_recovers_separate_groups() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    x = np.concatenate([c + rng.normal(0, 0.3, (40, 2)) for c in centres])
    truth = np.repeat(np.arange(3), 40)
    found = find_classes(x)
    assert found.count == 3 and found.silhouette > 0.7
    assigned = found.assign(x)
    assert all(len(set(assigned[truth == t])) == 1 for t in range(3))  # one class per group
    assert len(set(assigned)) == 3
    assert found.assign(centres + 0.1).tolist() == [assigned[0], assigned[40], assigned[80]]
    assert kmeans(x, 3).shape == (3, 2)


@pytest.mark.parametrize("domain", ["shapes", "shifted"])
def test_found_classes_never_mix_two_labelled_kinds(domain: str, tmp_path: Path) -> None:
    """On both rendered domains, each class found holds objects of one labelled shape (outlines)
    or one labelled colour (colours): a class may split a kind, never join two."""
    generate_split(tmp_path, seed=5, num_images=60, split="test", progress=False, domain=domain)
    shapes, colours, tags, attributes = [], [], [], []
    for record in load_objects(tmp_path / "objects.jsonl"):
        found = foreground_objects(np.asarray(load_rgb(record.image), np.float32))
        truth = np.array([o.box for o in record.objects], np.float32)
        match = iou(found.boxes, truth).argmax(0)  # each labelled object's found box
        shapes.append(found.shapes[match])
        colours.append(found.colours[match])
        tags += [o.tag for o in record.objects]
        attributes += [o.attribute for o in record.objects]
    for descriptors, labels in ((shapes, tags), (colours, attributes)):
        grouping = find_classes(np.concatenate(descriptors))
        assigned = grouping.assign(np.concatenate(descriptors))
        kinds = np.array(labels)
        assert all(len(set(kinds[assigned == c])) == 1 for c in set(assigned.tolist()))
        assert grouping.count >= len(set(labels))
