"""Trace the detector and the CMAL fusion graph to ONNX and TorchScript, with dynamic axes.

Two graphs per model: ``detector`` (images -> regions) and ``fusion`` (tokens + regions + anchors ->
every task head's logits). Batch, token, region and anchor axes are dynamic.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from cmal.detector.model import Detector
from cmal.inference import DETECTOR_OUTPUTS, FUSION_INPUTS, FUSION_OUTPUTS
from cmal.model.cmal import CMAL

OPSET = 18

FUSION_AXES: dict[str, dict[int, str]] = {
    "input_ids": {0: "batch", 1: "tokens"},
    "attention_mask": {0: "batch", 1: "tokens"},
    "region_boxes": {0: "batch", 1: "regions"},
    "region_features": {0: "batch", 1: "regions"},
    "region_valid": {0: "batch", 1: "regions"},
    "anchor_token": {0: "batch", 1: "anchors"},
    "anchor_region": {0: "batch", 1: "anchors"},
    "anchor_valid": {0: "batch", 1: "anchors"},
    "ve_logits": {0: "batch"},
    "itm_logits": {0: "batch"},
    "vqa_logits": {0: "batch"},
    "rec_logits": {0: "batch", 1: "regions"},
}
DETECTOR_AXES: dict[str, dict[int, str]] = {
    "images": {0: "batch"},
    **{n: {0: "batch"} for n in DETECTOR_OUTPUTS},
}


def detector_example(model: Detector, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """A fixed random (batch, 3, S, S) image batch in [0, 1) to trace the detector on."""
    size = model.config.image_size
    return (torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)),)


def fusion_example(
    model: CMAL, batch: int = 2, tokens: int = 12, regions: int | None = None, anchors: int = 3, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random but well-formed fusion inputs (with padding in text, regions and anchors)."""
    c = model.config
    k = regions or c.max_regions
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, c.vocab_size, (batch, tokens), generator=g)
    mask = torch.ones(batch, tokens, dtype=torch.long)
    lengths = torch.randint(3, tokens + 1, (batch,), generator=g)
    for i, n in enumerate(lengths.tolist()):
        mask[i, n:] = 0
        ids[i, n:] = 0
        ids[i, 0], ids[i, n - 1] = 2, 3
    boxes = torch.rand(batch, k, 2, generator=g) * 0.5
    boxes = torch.cat([boxes, boxes + 0.1 + torch.rand(batch, k, 2, generator=g) * 0.4], dim=-1)
    valid = torch.rand(batch, k, generator=g) > 0.3
    valid[:, 0] = True
    features = torch.rand(batch, k, c.region_feature_dim, generator=g) * valid.unsqueeze(-1)
    anchor_token = torch.randint(1, 3, (batch, anchors), generator=g)
    anchor_region = torch.randint(0, k, (batch, anchors), generator=g)
    anchor_valid = torch.rand(batch, anchors, generator=g) > 0.4
    return (ids, mask, boxes, features, valid, anchor_token, anchor_region, anchor_valid)


def export_onnx(
    model: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    axes: dict[str, dict[int, str]],
    opset: int = OPSET,
) -> Path:
    """Trace ``model`` on ``example`` to ONNX (TorchScript-based exporter) and run the ONNX checker."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), example, str(path), input_names=list(inputs), output_names=list(outputs),
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )  # fmt: skip
    onnx.checker.check_model(str(path), full_check=True)
    return path


def export_detector_onnx(model: Detector, path: Path) -> Path:
    """Export the detector to ONNX at ``path`` (dynamic batch axis); returns ``path``."""
    return export_onnx(model, detector_example(model), path, ("images",), DETECTOR_OUTPUTS, DETECTOR_AXES)


def export_fusion_onnx(model: CMAL, path: Path) -> Path:
    """Export the fusion graph to ONNX at ``path`` (dynamic batch, token, region and anchor axes);
    returns ``path``.
    """
    return export_onnx(model, fusion_example(model), path, FUSION_INPUTS, FUSION_OUTPUTS, FUSION_AXES)


def export_torchscript(model: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> Path:
    """Trace ``model`` to TorchScript (shapes stay symbolic: the graphs take other sizes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), example, check_trace=False, strict=False)
    traced.save(str(path))
    return path
