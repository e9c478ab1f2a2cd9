"""Export the detector to one ONNX graph (decoding included) and check it against PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from cmal.detector.model import Detector

INPUTS = ("images",)
OUTPUTS = ("boxes", "scores", "tags", "attributes", "features", "valid")
OPSET = 18


def export_detector_onnx(model: Detector, path: Path, opset: int = OPSET, dynamo: bool = False) -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch axis.

    Args:
        model: the detector.
        path: the ``.onnx`` file to write.
        opset: ONNX opset.
        dynamo: use the torch.export-based exporter (slower here; the TorchScript one is default).
    """
    model = model.eval()
    size = model.config.image_size
    example = torch.rand(2, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=list(INPUTS),
                output_names=list(OUTPUTS),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=1024)}},
            )
        else:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=list(INPUTS),
                output_names=list(OUTPUTS),
                opset_version=opset,
                dynamo=False,
                dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}},
            )
    return path


def detector_parity(model: Detector, path: Path, images: np.ndarray) -> dict[str, float]:
    """Max absolute difference per output between PyTorch and ONNX Runtime on ``images``.

    Args:
        model: the detector.
        path: its ONNX graph.
        images: (B, 3, S, S) float32 in [0, 1].

    Returns:
        ``{output: max_abs_diff}`` for float outputs and ``{output: mismatches}`` for id/bool ones.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUTS), {"images": images.astype(np.float32)})
    with torch.no_grad():
        want = [t.numpy() for t in model.eval()(torch.from_numpy(images.astype(np.float32)))]
    result = {}
    for name, a, b in zip(OUTPUTS, got, want, strict=True):
        if a.shape != b.shape:
            raise AssertionError(f"{name}: ONNX shape {a.shape} != PyTorch shape {b.shape}")
        if a.dtype.kind == "f":
            result[name] = float(np.abs(a - b).max()) if a.size else 0.0
        else:
            result[name] = float((a != b).sum())
    return result
