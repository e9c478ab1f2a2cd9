"""Detector regions for every image of a dataset folder, computed once and cached on disk.

Training and evaluation read regions from the detector (never ground-truth boxes). The cache is an
``.npz`` (loaded with ``allow_pickle=False``) under ``<data>/.cmal-cache/``, keyed by the detector
weights and the image list, so a changed detector or dataset is never served stale regions.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cmal.data.formats import PARSERS, load
from cmal.detector.io import load_detector
from cmal.imaging import load_rgb, to_input
from cmal.model_dir import DETECTOR_CONFIG, DETECTOR_WEIGHTS


@dataclass
class RegionTable:
    """Detector output per image, row ``index[path]``."""

    paths: list[str]
    boxes: np.ndarray  # (N, K, 4) float32 normalised
    scores: np.ndarray  # (N, K) float32
    tags: np.ndarray  # (N, K) int64
    attributes: np.ndarray  # (N, K) int64
    features: np.ndarray  # (N, K, D) float32
    valid: np.ndarray  # (N, K) bool
    sizes: np.ndarray  # (N, 2) int64 original width, height

    def __post_init__(self) -> None:
        self.index = {p: i for i, p in enumerate(self.paths)}

    def row(self, path: Path) -> int:
        """The row of the image at ``path``."""
        return self.index[str(path)]


FIELDS = ("boxes", "scores", "tags", "attributes", "features", "valid", "sizes")


def dataset_images(folder: Path, tasks: tuple[str, ...] = tuple(PARSERS)) -> list[Path]:
    """Every distinct image referenced by the task files present in ``folder``, sorted."""
    images: set[Path] = set()
    for task in tasks:
        path = folder / f"{task}.jsonl"
        if path.is_file():
            images.update(r.image for r in load(path, task))
    return sorted(images)


def detect_images(
    model_dir: Path, images: list[Path], cache_dir: Path | None, progress: bool = True, batch_size: int = 64
) -> RegionTable:
    """Run the model directory's detector over ``images`` (or read the cached result)."""
    # the config too: the same weights read images at another input size give other regions
    detector_files = (model_dir / DETECTOR_WEIGHTS).read_bytes() + (model_dir / DETECTOR_CONFIG).read_bytes()
    key = hashlib.sha256(detector_files + "\n".join(map(str, images)).encode()).hexdigest()[:20]
    cache = cache_dir / f"regions-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            arrays = {f: z[f] for f in FIELDS}
        return RegionTable(paths=[str(p) for p in images], **arrays)
    detector, _, _ = load_detector(model_dir)
    size = detector.config.image_size
    outs: list[list[np.ndarray]] = []
    sizes = []
    bar = tqdm(range(0, len(images), batch_size), desc="detect regions", unit="batch", disable=not progress)
    with torch.no_grad():
        for start in bar:
            batch = []
            for p in images[start : start + batch_size]:
                image = load_rgb(p)
                sizes.append(image.size)
                batch.append(to_input(image, size))
            out = detector(torch.from_numpy(np.stack(batch)))
            outs.append([t.numpy() for t in out])
    if not outs:
        raise ValueError("no images to detect regions in")
    boxes, scores, tags, attributes, features, valid = (
        np.concatenate(parts) for parts in zip(*outs, strict=True)
    )
    table = RegionTable(
        [str(p) for p in images], boxes, scores, tags, attributes, features, valid, np.array(sizes, np.int64)
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.parent / f"{cache.stem}.{os.getpid()}.tmp.npz"  # processes may race (torchrun)
        np.savez(tmp, **{f: getattr(table, f) for f in FIELDS})
        tmp.replace(cache)
    return table


def detect_folder(model_dir: Path, folder: Path, progress: bool = True) -> RegionTable:
    """Regions for every image of a dataset folder, cached in ``folder/.cmal-cache``."""
    images = dataset_images(folder)
    if not images:
        raise FileNotFoundError(f"{folder}: no dataset files (captions/itm/ve/rec/vqa/objects .jsonl) found")
    return detect_images(model_dir, images, folder / ".cmal-cache", progress)
