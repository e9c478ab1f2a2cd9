"""Detection examples from ``objects.jsonl``, held in memory as resized uint8 images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from cmal.data.formats import load_objects
from cmal.imaging import load_rgb, to_input


@dataclass
class DetectionSet:
    """Images resized to the detector input, with their objects in input-pixel coordinates."""

    images: np.ndarray  # (N, 3, S, S) uint8
    boxes: list[np.ndarray]  # per image (N_i, 4) float32, pixels of the resized image
    original_boxes: list[np.ndarray]  # per image (N_i, 4), pixels of the original image
    sizes: list[tuple[int, int]]  # original (width, height)
    tags: list[np.ndarray]  # per image (N_i,) int64
    attributes: list[np.ndarray]  # per image (N_i,) int64


def label_lists(
    folder: Path, known_tags: tuple[str, ...], known_attributes: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """Tag and attribute vocabularies: the known ones first, then any new ones in the data, sorted."""
    tags, attributes = set(), set()
    for rec in load_objects(folder / "objects.jsonl"):
        for o in rec.objects:
            tags.add(o.tag)
            if o.attribute is not None:
                attributes.add(o.attribute)
    return (
        [*known_tags, *sorted(tags - set(known_tags))],
        [*known_attributes, *sorted(attributes - set(known_attributes))],
    )


def _add_image(out: DetectionSet, i: int, image: Image.Image, boxes: np.ndarray, image_size: int) -> None:
    """Put ``image``, resized to the detector input, in row ``i`` of ``out``, with its ``boxes``
    (original pixels) both as they are and scaled to the resized image; labels are the caller's."""
    w, h = image.size
    out.images[i] = np.round(to_input(image, image_size) * 255).astype(np.uint8)
    out.original_boxes.append(boxes)
    out.boxes.append(boxes * np.array([image_size / w, image_size / h] * 2, np.float32))
    out.sizes.append((w, h))


def load_detection_set(
    folder: Path,
    image_size: int,
    tags: list[str],
    attributes: list[str],
    limit: int | None = None,
    progress: bool = True,
) -> DetectionSet:
    """Read ``folder/objects.jsonl`` and its images.

    Raises:
        DataError: malformed lines; ValueError: a tag or attribute not in the vocabularies.
    """
    records = load_objects(folder / "objects.jsonl")[:limit]
    tag_id = {t: i for i, t in enumerate(tags)}
    attr_id = {a: i for i, a in enumerate(attributes)}
    images = np.zeros((len(records), 3, image_size, image_size), np.uint8)
    out = DetectionSet(images, [], [], [], [], [])
    for i, rec in enumerate(tqdm(records, desc=f"load {folder.name}", unit="img", disable=not progress)):
        boxes = np.array([o.box for o in rec.objects], np.float32).reshape(-1, 4)
        _add_image(out, i, load_rgb(rec.image), boxes, image_size)
        try:
            out.tags.append(np.array([tag_id[o.tag] for o in rec.objects], np.int64))
            out.attributes.append(np.array([attr_id[o.attribute or ""] for o in rec.objects], np.int64))
        except KeyError as e:
            raise ValueError(f"{rec.image}: label {e.args[0]!r} is not in the model's vocabulary") from None
    return out


UNLABELLED = -1
"""Tag or attribute id of an object whose class is unknown (boxes found in the pixels): the
classification losses skip it."""


class FoundDescriptors(NamedTuple):
    """What the objects found in a folder's pixels look like, per image in `DetectionSet` order."""

    paths: list[Path]  # each image, as the task files resolve it
    shapes: list[np.ndarray]  # per image (N_i, len(SHAPE_DESCRIPTORS))
    colours: list[np.ndarray]  # per image (N_i, 3)
    centre_gaps: list[np.ndarray]  # per image (N_i,): `centre_gap` in the detector's input pixels
    sides: list[np.ndarray]  # per image (N_i,): the box's longer side, a share of the image's longer side


def foreground_detection_set(
    folder: Path, image_size: int, progress: bool = True
) -> tuple[DetectionSet, FoundDescriptors]:
    """Every image a task file of ``folder`` names, with class-agnostic boxes found in its pixels
    (`cmal.data.foreground`): no ``objects.jsonl`` needed; tags and attributes are `UNLABELLED`
    (`cmal.detector.found` gives them classes); and each object's shape and colour descriptors."""
    from cmal.data.foreground import foreground_objects
    from cmal.regions import dataset_images

    paths = dataset_images(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no dataset files with images found")
    images = np.zeros((len(paths), 3, image_size, image_size), np.uint8)
    out = DetectionSet(images, [], [], [], [], [])
    found = FoundDescriptors(paths, [], [], [], [])
    bar = tqdm(paths, desc=f"find objects in {folder.name}", unit="img", disable=not progress)
    for i, path in enumerate(bar):
        image = load_rgb(path)  # decoded once: the objects are found in it, then it is resized
        objects = foreground_objects(np.asarray(image, np.float32))
        _add_image(out, i, image, objects.boxes, image_size)
        out.tags.append(np.full(len(objects.boxes), UNLABELLED, np.int64))
        out.attributes.append(np.full(len(objects.boxes), UNLABELLED, np.int64))
        found.shapes.append(objects.shapes)
        found.colours.append(objects.colours)
        found.centre_gaps.append(objects.centre_gaps * (image_size / max(image.size)))
        box = objects.boxes
        found.sides.append(np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) / max(image.size))
    return out, found
