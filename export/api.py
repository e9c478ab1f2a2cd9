"""Export a model directory: graphs, variants, parity checks and ``manifest.json`` in one call."""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cmal.detector.io import load_detector
from cmal.inference import DETECTOR_OUTPUTS, FUSION_INPUTS, FUSION_OUTPUTS, ModelFiles, sha256
from cmal.model.io import load_cmal
from cmal.model_dir import EXPORT_DIR, MANIFEST, WEIGHT_FILES, write_json
from export.graphs import (
    OPSET,
    detector_example,
    export_detector_onnx,
    export_fusion_onnx,
    export_torchscript,
    fusion_example,
)
from export.parity import (
    VARIANT_POLICY,
    VariantPolicy,
    fp32_parity,
    make_parity_set,
    onnx_runner,
    torch_runners,
    torchscript_runner,
    variant_agreement,
)
from export.variants import optimise, to_fp16, to_int8

FORMATS = ("onnx", "torchscript", "all")


class ParityError(RuntimeError):
    """An exported graph does not reproduce the PyTorch model within tolerance."""


def _io_spec(path: Path) -> dict[str, list[dict[str, Any]]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def spec(items: Sequence[Any]) -> list[dict[str, Any]]:
        return [
            {"name": i.name, "shape": list(i.shape), "dtype": i.type.replace("tensor(", "").rstrip(")")}
            for i in items
        ]

    return {"inputs": spec(session.get_inputs()), "outputs": spec(session.get_outputs())}


def export_model(
    model_dir: Path,
    fmt: str = "all",
    out_dir: Path | None = None,
    fp16: bool = False,
    int8: bool = False,
    log: Any = print,
    variant_policy: VariantPolicy | None = VARIANT_POLICY,
) -> dict[str, Any]:
    """Export ``model_dir``'s detector and fusion graphs and check them against PyTorch.

    Args:
        model_dir: a trained model directory (detector + CMAL).
        fmt: ``onnx``, ``torchscript`` or ``all``.
        out_dir: where graphs and ``manifest.json`` go (default ``model_dir/export``).
        fp16: also write half-precision ONNX graphs (for GPUs) and check their decisions.
        int8: also write a dynamically quantised fusion graph (for CPUs) and check its decisions.
        log: progress messages go here.
        variant_policy: when fp16 / int8 graphs pass (see `VariantPolicy`); None records their
            figures without a verdict (for untrained models, whose decisions are near-ties).

    Returns:
        The manifest.

    Raises:
        ParityError: an fp32 graph differs from PyTorch beyond 1e-4 or changes a decision; the
            manifest is still written, with ``"passed": false``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if (fp16 or int8) and fmt == "torchscript":
        raise ValueError("--fp16 and --int8 are ONNX variants: use --format onnx or all")
    start = time.perf_counter()
    out = out_dir or model_dir / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    detector, _, _ = load_detector(model_dir)
    model, _, _ = load_cmal(model_dir)
    files = ModelFiles.load(model_dir)
    written: dict[str, dict[str, Any]] = {}
    graphs: dict[str, Any] = {}
    parity: dict[str, Any] = {}
    data = make_parity_set(detector.config.image_size)
    reference = torch_runners(detector, model)

    def record(name: str, fmt_name: str, graph: str, variant: str) -> None:
        path = out / name
        written[name] = {
            "format": fmt_name,
            "graph": graph,
            "variant": variant,
            "bytes": path.stat().st_size,
            "sha256": sha256(path),
        }

    if fmt in ("onnx", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            raw_det = export_detector_onnx(detector, Path(tmp) / "detector.onnx")
            raw_fus = export_fusion_onnx(model, Path(tmp) / "fusion.onnx")
            optimise(raw_det, out / "detector.onnx")
            optimise(raw_fus, out / "fusion.onnx")
        record("detector.onnx", "onnx", "detector", "fp32")
        record("fusion.onnx", "onnx", "fusion", "fp32")
        graphs["detector"] = _io_spec(out / "detector.onnx")
        graphs["fusion"] = _io_spec(out / "fusion.onnx")
        log("checking ONNX Runtime against PyTorch (batches 1, 7, 32)")
        onnx_pair = (
            onnx_runner(out / "detector.onnx", DETECTOR_OUTPUTS),
            onnx_runner(out / "fusion.onnx", FUSION_OUTPUTS),
        )
        parity["onnx_fp32"] = fp32_parity(files, data, reference, onnx_pair)
        if fp16:
            to_fp16(out / "detector.onnx", out / "detector.fp16.onnx")
            to_fp16(out / "fusion.onnx", out / "fusion.fp16.onnx")
            record("detector.fp16.onnx", "onnx", "detector", "fp16")
            record("fusion.fp16.onnx", "onnx", "fusion", "fp16")
            log("checking the fp16 graphs' decisions against fp32")
            pair = (
                onnx_runner(out / "detector.fp16.onnx", DETECTOR_OUTPUTS),
                onnx_runner(out / "fusion.fp16.onnx", FUSION_OUTPUTS),
            )
            parity["onnx_fp16"] = variant_agreement(files, data, onnx_pair, pair, variant_policy)
        if int8:
            to_int8(out / "fusion.onnx", out / "fusion.int8.onnx")
            record("fusion.int8.onnx", "onnx", "fusion", "int8")
            log("checking the int8 fusion graph's decisions against fp32")
            pair = (onnx_pair[0], onnx_runner(out / "fusion.int8.onnx", FUSION_OUTPUTS))
            parity["onnx_int8"] = variant_agreement(files, data, onnx_pair, pair, variant_policy)
    if fmt in ("torchscript", "all"):
        export_torchscript(detector, detector_example(detector), out / "detector.ts")
        export_torchscript(model, fusion_example(model), out / "fusion.ts")
        record("detector.ts", "torchscript", "detector", "fp32")
        record("fusion.ts", "torchscript", "fusion", "fp32")
        log("checking TorchScript against PyTorch (batches 1, 7, 32)")
        ts_pair = (
            torchscript_runner(out / "detector.ts", ("images",)),
            torchscript_runner(out / "fusion.ts", FUSION_INPUTS),
        )
        parity["torchscript"] = fp32_parity(files, data, reference, ts_pair)
    manifest = {
        "model": {"name": files.name, "version": files.version},
        "weights": {f: sha256(model_dir / f) for f in WEIGHT_FILES},
        "opset": OPSET,
        "exporter": {"torch": torch.__version__, "python": platform.python_version()},
        "graphs": graphs,
        "files": written,
        "parity": parity,
        "passed": all(p["passed"] is not False for p in parity.values()),
        "export_seconds": round(time.perf_counter() - start, 1),
    }
    write_json(out / MANIFEST, manifest)
    failed = [k for k, p in parity.items() if p["passed"] is False]
    if failed:
        raise ParityError(f"parity failed for {', '.join(failed)}: see {out / MANIFEST}")
    return manifest


def clean_export(out: Path) -> None:
    """Remove an export folder (graphs are build outputs)."""
    shutil.rmtree(out, ignore_errors=True)
