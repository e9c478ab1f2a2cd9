"""The committed demo detector: accuracy on a freshly generated split, and empty images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cmal.data.generate import generate_split
from cmal.data.render import render
from cmal.data.scene import Scene
from cmal.detector.io import load_detector
from cmal.detector.train import evaluate_detector_dir

DEMO = Path(__file__).resolve().parents[2] / "models" / "shapes-demo"


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    return load_detector(DEMO)


def test_accuracy_on_a_split_never_used_in_training(tmp_path: Path) -> None:
    generate_split(tmp_path, seed=5555, num_images=150, split="test", progress=False)
    m = evaluate_detector_dir(DEMO, tmp_path, progress=False)
    assert m["n_objects"] > 400
    assert m["recall"] >= 0.99
    assert m["precision"] >= 0.98
    assert m["tag_accuracy"] >= 0.99
    assert m["attribute_accuracy"] >= 0.99


def test_image_with_zero_objects_gives_zero_valid_regions(detector) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = detector
    images = []
    for seed in range(8):
        image = render(Scene(128, ()), np.random.default_rng(seed))
        images.append(np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0)
    with torch.no_grad():
        out = model(torch.from_numpy(np.stack(images)))
    assert out.valid.sum() == 0
    assert out.features.abs().sum() == 0


def test_labels_are_the_shapes_vocabulary(detector) -> None:  # type: ignore[no-untyped-def]
    _, tags, attributes = detector
    assert tags == ["circle", "square", "triangle", "diamond", "cross"]
    assert attributes == ["red", "green", "blue", "yellow", "purple", "orange"]
