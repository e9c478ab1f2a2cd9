"""Saving and loading the detector in a model directory (safetensors; never pickles)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cmal.detector.config import DetectorConfig
from cmal.detector.model import Detector

WEIGHTS = "detector.safetensors"
CONFIG = "detector.json"
LABELS = "labels.json"


def save_detector(model: Detector, folder: Path, tags: list[str], attributes: list[str]) -> None:
    """Write weights, config and the tag/attribute vocabularies into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt", "model": "cmal-detector"})
    model.config.save(folder / CONFIG)
    labels_path = folder / LABELS
    labels = json.loads(labels_path.read_text()) if labels_path.exists() else {}
    labels.update({"tags": tags, "attributes": attributes})
    labels_path.write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")


def load_detector(folder: Path) -> tuple[Detector, list[str], list[str]]:
    """Load the detector of a model directory, in eval mode.

    Returns:
        The model, its tag names and its attribute names (index = id).
    """
    for name in (WEIGHTS, CONFIG, LABELS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a model directory with a detector: {name} is missing")
    config = DetectorConfig.load(folder / CONFIG)
    labels = json.loads((folder / LABELS).read_text())
    model = Detector(config)
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    model.eval()
    if len(labels["tags"]) != config.num_tags or len(labels["attributes"]) != config.num_attributes:
        raise ValueError(f"{folder}: labels.json does not match the detector's class counts")
    return model, labels["tags"], labels["attributes"]


@torch.no_grad()
def run_detector(model: Detector, images: torch.Tensor, batch_size: int = 64) -> list[torch.Tensor]:
    """Run ``model`` over uint8 images (N, 3, S, S) in batches; returns the six outputs concatenated."""
    outs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].float() / 255.0
        outs.append(model(batch))
    return [torch.cat(parts) for parts in zip(*outs, strict=True)]
