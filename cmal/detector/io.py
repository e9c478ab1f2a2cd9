"""Saving and loading the detector in a model directory (safetensors; never pickles)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cmal.detector.config import DetectorConfig
from cmal.detector.model import Detector
from cmal.model_dir import DETECTOR_CONFIG, DETECTOR_WEIGHTS, LABELS, read_json, require, update_labels


def save_detector(model: Detector, folder: Path, tags: list[str], attributes: list[str]) -> None:
    """Write weights, config and the tag/attribute vocabularies into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / DETECTOR_WEIGHTS), metadata={"format": "pt", "model": "cmal-detector"})
    model.config.save(folder / DETECTOR_CONFIG)
    update_labels(folder, tags=tags, attributes=attributes)


def copy_detector(src: Path, dst: Path) -> None:
    """Copy ``src``'s detector (weights, config, tag and attribute vocabularies) into model directory
    ``dst``, keeping the rest of ``dst``'s labels; nothing to do when both are the same folder."""
    for name in (DETECTOR_WEIGHTS, DETECTOR_CONFIG):
        if not (src / name).is_file():
            raise FileNotFoundError(
                f"{src} has no detector ({name} missing): train one with `cmal train detector`"
            )
    if src.resolve() == dst.resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for name in (DETECTOR_WEIGHTS, DETECTOR_CONFIG):
        shutil.copyfile(src / name, dst / name)
    labels = read_json(src / LABELS)
    update_labels(dst, tags=labels["tags"], attributes=labels["attributes"])


def load_detector(folder: Path) -> tuple[Detector, list[str], list[str]]:
    """Load the detector of a model directory, in eval mode.

    Returns:
        The model, its tag names and its attribute names (index = id).
    """
    require(folder, (DETECTOR_WEIGHTS, DETECTOR_CONFIG, LABELS), "a model directory with a detector")
    config = DetectorConfig.load(folder / DETECTOR_CONFIG)
    labels = read_json(folder / LABELS)
    model = Detector(config)
    model.load_state_dict(load_file(str(folder / DETECTOR_WEIGHTS)))
    model.eval()
    if len(labels["tags"]) != config.num_tags or len(labels["attributes"]) != config.num_attributes:
        raise ValueError(f"{folder}: {LABELS} does not match the detector's class counts")
    return model, labels["tags"], labels["attributes"]


@torch.no_grad()
def run_detector(model: Detector, images: torch.Tensor, batch_size: int = 64) -> list[torch.Tensor]:
    """Run ``model`` over uint8 images (N, 3, S, S) in batches; returns the six outputs concatenated."""
    outs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].float() / 255.0
        outs.append(model(batch))
    return [torch.cat(parts) for parts in zip(*outs, strict=True)]
