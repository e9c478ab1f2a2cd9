"""The eager PyTorch backend on the GPU against the same model on the CPU, on the export's parity
set: fp32 by `export.parity.fp32_parity` (largest output difference, decision mismatches), fp16
autocast by `export.parity.variant_agreement` (decision agreement, accuracy change, the export's
own policy).

Usage: python scripts/gpu_parity.py MODEL_DIR OUT.json   (needs torch with CUDA)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from service.runtime import TorchBackend


def gpu_runners(backend: TorchBackend) -> tuple[Any, Any]:
    """Detector and fusion runners (export.parity's ``Runner``) over a `TorchBackend`."""
    from cmal.inference import FUSION_INPUTS

    def det(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return backend._run(backend.detector, [feeds["images"]])

    def fuse(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return backend._run(backend.fusion, [feeds[n] for n in FUSION_INPUTS])

    return det, fuse


def main(model_dir: Path, out: Path) -> None:
    """Write the comparison to ``out`` and print it."""
    import torch

    from cmal.detector.io import load_detector
    from cmal.inference import ModelFiles
    from cmal.model.io import load_cmal
    from export.parity import fp32_parity, make_parity_set, torch_runners, variant_agreement

    assert torch.cuda.is_available(), "no GPU that torch can use"
    files = ModelFiles.load(model_dir)
    data = make_parity_set(files.image_size)
    detector, _, _ = load_detector(model_dir)
    fusion, _, _ = load_cmal(model_dir)
    cpu = torch_runners(detector, fusion)
    fp32 = TorchBackend(model_dir, None, "torch", 0, variant="fp32")
    fp16 = TorchBackend(model_dir, None, "torch", 0, variant="fp16")
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "fp32_vs_cpu": fp32_parity(files, data, cpu, gpu_runners(fp32)),
        "fp16_vs_cpu_fp32": variant_agreement(files, data, cpu, gpu_runners(fp16)),
    }
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
