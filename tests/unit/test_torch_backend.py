"""The eager PyTorch backend: where it runs and which variants it offers there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cmal.bench.presets import BUNDLED
from service.runtime import TORCH_VARIANTS, load_backend, require_torch_variant


def test_fp16_is_offered_on_a_gpu_only() -> None:
    require_torch_variant("torch", "fp16", "cuda")
    require_torch_variant("torch", "fp32", "cpu")
    with pytest.raises(ValueError, match="torch on the cpu offers the variants fp32, not 'fp16'"):
        require_torch_variant("torch", "fp16", "cpu")
    with pytest.raises(ValueError, match="not 'int8'"):  # dynamic int8 is an ONNX graph
        require_torch_variant("torchscript", "int8", "cuda")
    assert set(TORCH_VARIANTS) == {"cuda", "cpu"}


def test_without_a_gpu_the_backend_runs_on_the_cpu_and_refuses_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    backend = load_backend(Path(BUNDLED), None, "torch", "fp32", 1)
    assert backend.provider == "cpu"
    assert all(p.device.type == "cpu" for p in backend.fusion.parameters())  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="not 'fp16'"):
        load_backend(Path(BUNDLED), None, "torch", "fp16", 1)
