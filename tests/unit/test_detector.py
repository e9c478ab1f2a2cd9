"""Detector: decoding, targets, metrics, box scaling, ONNX parity, safetensors round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmal.detector import Detector, DetectorConfig
from cmal.detector.io import load_detector, save_detector
from cmal.detector.losses import detector_losses
from cmal.detector.metrics import detection_metrics
from cmal.detector.model import DenseMaps
from cmal.detector.targets import build_targets
from cmal.imaging import boxes_to_pixels, iou, to_input
from cmal.inference import DETECTOR_OUTPUTS
from export.graphs import export_detector_onnx

CONFIG = DetectorConfig(max_detections=4, score_threshold=0.3)


def hand_made_maps() -> DenseMaps:
    """Two objects on a 32x32 grid (stride 4, 128 px): peaks at cells (x=5, y=10) and (x=20, y=3)."""
    heat = torch.full((1, 1, 32, 32), -10.0)
    heat[0, 0, 10, 5] = 3.0  # sigmoid 0.9526
    heat[0, 0, 10, 6] = 1.0  # a neighbour of the first peak: suppressed by the 3x3 max-pool
    heat[0, 0, 3, 20] = 0.0  # sigmoid 0.5
    heat[0, 0, 30, 30] = -1.5  # sigmoid 0.18: a peak, below the threshold
    size = torch.zeros(1, 2, 32, 32)
    size[0, :, 10, 5] = torch.tensor([4.0, 6.0])  # 16 x 24 px
    size[0, :, 3, 20] = torch.tensor([8.0, 8.0])  # 32 x 32 px
    offset = torch.zeros(1, 2, 32, 32)
    offset[0, :, 10, 5] = torch.tensor([0.5, 0.25])
    features = torch.zeros(1, 3, 32, 32)
    features[0, :, 10, 5] = torch.tensor([1.0, 2.0, 3.0])
    tag_logits = torch.zeros(1, 5, 32, 32)
    tag_logits[0, 2, 10, 5] = 5.0
    tag_logits[0, 4, 3, 20] = 5.0
    attr = torch.zeros(1, 6, 32, 32)
    attr[0, 1, 10, 5] = 5.0
    attr[0, 5, 3, 20] = 5.0
    return DenseMaps(heat, size, offset, features, tag_logits, attr)


def test_decoding_a_hand_made_heatmap() -> None:
    out = Detector(CONFIG).decode(hand_made_maps(), 128, 128)
    assert out.valid.tolist() == [[True, True, False, False]]
    assert out.scores[0, :2].tolist() == pytest.approx([1 / (1 + np.exp(-3)), 0.5], abs=1e-6)
    # centre (5.5, 10.25) cells = (22, 41) px; 16 x 24 px -> (14, 29, 30, 53)
    assert (out.boxes[0, 0] * 128).tolist() == pytest.approx([14, 29, 30, 53], abs=1e-4)
    # centre (20, 3) cells = (80, 12) px; 32 x 32 px -> (64, -4, 96, 28), clamped at the border
    assert (out.boxes[0, 1] * 128).tolist() == pytest.approx([64, 0, 96, 28], abs=1e-4)
    assert out.tags[0, :2].tolist() == [2, 4]
    assert out.attributes[0, :2].tolist() == [1, 5]
    assert out.features[0, 0].tolist() == [1.0, 2.0, 3.0]
    assert out.features[0, 2:].abs().sum() == 0  # invalid slots carry zero features
    assert out.scores[0, 2] == pytest.approx(1 / (1 + np.exp(1.5)), abs=1e-6)  # the third peak


def test_zero_objects_zero_valid_regions() -> None:
    maps = hand_made_maps()
    maps = maps._replace(heat=torch.full_like(maps.heat, -10.0))
    out = Detector(CONFIG).decode(maps, 128, 128)
    assert not out.valid.any()
    assert out.features.abs().sum() == 0


def test_targets_place_centres_and_offsets_exactly() -> None:
    boxes = [np.array([[14, 29, 30, 53]], np.float32), np.zeros((0, 4), np.float32)]
    t = build_targets(
        boxes, [np.array([3]), np.array([], np.int64)], [np.array([1]), np.array([], np.int64)], 128, 4
    )
    assert t.heat.shape == (2, 1, 32, 32)
    assert t.heat[0, 0, 10, 5] == 1.0 and t.heat[0].eq(1).sum() == 1
    assert t.heat[1].sum() == 0
    assert t.centre[0, 0] == 10 * 32 + 5 and t.mask.tolist() == [[True], [False]]
    assert t.offset[0, 0].tolist() == pytest.approx([0.5, 0.25])
    assert t.size[0, 0].tolist() == pytest.approx([4.0, 6.0])
    assert t.tag[0, 0] == 3 and t.attribute[0, 0] == 1


def test_losses_fall_when_fitting_one_batch() -> None:
    torch.manual_seed(0)
    model = Detector(DetectorConfig())
    images = torch.rand(2, 3, 128, 128)
    boxes = [
        np.array([[10, 10, 30, 30], [60, 60, 90, 90]], np.float32),
        np.array([[40, 80, 56, 96]], np.float32),
    ]
    t = build_targets(boxes, [np.array([0, 1]), np.array([2])], [np.array([3, 4]), np.array([5])], 128, 4)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    first = None
    for _ in range(60):
        losses = detector_losses(model.dense(images), t)
        first = first if first is not None else {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
    assert first is not None
    assert losses["total"].item() < first["total"] / 10


def test_objects_without_a_class_train_only_the_boxes() -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        maps = Detector(DetectorConfig()).dense(torch.rand(1, 3, 128, 128))
    boxes = [np.array([[10, 10, 30, 30], [60, 60, 90, 90]], np.float32)]
    known = detector_losses(maps, build_targets(boxes, [np.array([0, 1])], [np.array([3, 4])], 128, 4))
    half = detector_losses(maps, build_targets(boxes, [np.array([-1, 1])], [np.array([-1, -1])], 128, 4))
    assert half["heat"] == known["heat"] and half["size"] == known["size"]  # the boxes count the same
    assert half["attribute"] == 0.0 and torch.isfinite(half["total"])  # none labelled: no loss, no NaN
    one = build_targets(boxes[:1], [np.array([1, 1])], [np.array([0, 0])], 128, 4)  # the class of box 2
    assert half["tag"] == pytest.approx(float(torch.nn.functional.cross_entropy(
        maps.tag_logits.flatten(2)[0, :, one.centre[0, 1]].unsqueeze(0), one.tag[0, 1:])))  # fmt: skip


def test_metrics_on_a_hand_made_case() -> None:
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    pred = [np.array([[0, 0, 10, 9], [50, 50, 60, 60], [21, 21, 30, 30]], np.float32)]
    m = detection_metrics(
        pred, [np.array([0.9, 0.8, 0.7])], [np.array([1, 0, 2])], [np.array([0, 0, 0])],
        gt, [np.array([1, 1])], [np.array([0, 1])],
    )  # fmt: skip
    assert m["recall"] == 1.0
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["tag_accuracy"] == 0.5  # second match has tag 2 vs 1
    assert m["attribute_accuracy"] == 0.5


def test_boxes_scale_back_to_original_pixels() -> None:
    boxes = np.array([[0.25, 0.5, 0.75, 1.0]], np.float32)
    assert boxes_to_pixels(boxes, 320, 200).tolist() == [[80.0, 100.0, 240.0, 200.0]]
    # an image of another size is resized to the detector input, aspect not kept
    image = Image.new("RGB", (256, 64), (255, 255, 255))
    image.paste((255, 0, 0), (64, 16, 128, 48))
    x = to_input(image, 128)
    assert x.shape == (3, 128, 128) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    red = np.argwhere((x[0] > 0.9) & (x[1] < 0.1))
    # red block at x 64..128 of 256 -> 32..64 of 128; y 16..48 of 64 -> 32..96 of 128
    assert red[:, 1].min() >= 31 and red[:, 1].max() <= 64
    assert red[:, 0].min() >= 31 and red[:, 0].max() <= 96


def test_iou() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    assert iou(a, b)[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])


SPLIT = DetectorConfig(colour_channels=16, grey_backbone=True)  # colour and shape read apart


@pytest.mark.parametrize("config", [DetectorConfig(), SPLIT], ids=["joint", "colour-path"])
def test_onnx_export_matches_pytorch_on_unseen_batch_sizes(tmp_path: Path, config: DetectorConfig) -> None:
    import onnxruntime as ort

    torch.manual_seed(1)
    model = Detector(config).eval()
    # make the heatmap confident somewhere so decoding has real detections to compare
    with torch.no_grad():
        model.heat.bias.fill_(0.5)  # type: ignore[union-attr]
    path = export_detector_onnx(model, tmp_path / "detector.onnx")  # traced at batch 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 7):
        images = np.random.default_rng(batch).random((batch, 3, 128, 128), np.float32)
        got = session.run(list(DETECTOR_OUTPUTS), {"images": images})
        with torch.no_grad():
            want = [t.numpy() for t in model(torch.from_numpy(images))]
        assert want[5].any()
        for name, a, b in zip(DETECTOR_OUTPUTS, got, want, strict=True):
            assert a.shape == b.shape, name
            if name in ("boxes", "scores", "features"):
                assert np.abs(a - b).max() <= 1e-4, (batch, name)
            else:
                assert np.array_equal(a, b), (batch, name)


@pytest.mark.parametrize("config", [DetectorConfig(), SPLIT], ids=["joint", "colour-path"])
def test_safetensors_round_trip_gives_identical_outputs(tmp_path: Path, config: DetectorConfig) -> None:
    torch.manual_seed(2)
    model = Detector(config).eval()
    save_detector(model, tmp_path, ["a", "b", "c", "d", "e"], ["r", "g", "b", "y", "p", "o"])
    loaded, tags, attributes = load_detector(tmp_path)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert tags == ["a", "b", "c", "d", "e"] and attributes[-1] == "o"
    assert (tmp_path / "detector.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle


def test_missing_model_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"detector\.safetensors is missing"):
        load_detector(tmp_path)
