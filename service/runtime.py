"""Inference backends behind one interface: ``detect(images) -> Regions`` and ``fuse(texts, regions)``.

ONNX Runtime first (CUDA execution provider when present, CPU otherwise); TorchScript and eager
PyTorch import torch only when chosen, so the ONNX path never loads it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from cmal.inference import (
    DETECTOR_OUTPUTS,
    FUSION_INPUTS,
    FUSION_OUTPUTS,
    ModelFiles,
    OnnxModel,
    Regions,
    encode_batch,
    fuse_by_length,
    preprocess,
)
from cmal.model_dir import EXPORT_DIR
from cmal.text.length_groups import INFERENCE_GROUPS

# the variants the torch and torchscript backends offer where they run: fp16 only on a GPU
TORCH_VARIANTS = {"cuda": ("fp32", "fp16"), "cpu": ("fp32",)}


def require_torch_variant(kind: str, variant: str, device: str) -> None:
    """``ValueError`` (one clear line) unless ``kind`` (torch, torchscript) offers ``variant`` on
    ``device`` (cuda, cpu)."""
    if variant not in TORCH_VARIANTS[device]:
        offered = ", ".join(TORCH_VARIANTS[device])
        raise ValueError(f"{kind} on the {device} offers the variants {offered}, not {variant!r}")


class BackendOverloaded(Exception):
    """A remote inference server rejected the batch: its queue is full (answered 429)."""


class BackendTimeout(Exception):
    """A remote inference server did not answer within the request deadline (answered 504)."""


class BackendUnavailable(Exception):
    """A remote inference server cannot be reached or is not ready (answered 503)."""


class Backend(Protocol):
    """What the service needs of an inference backend: ``name``, execution ``provider``, the model's
    ``files``, and `detect` and `fuse`.
    """

    name: str
    provider: str
    files: ModelFiles

    def detect(self, images: Sequence[Image.Image]) -> Regions:
        """Regions for a batch of decoded images (any sizes)."""
        ...

    def fuse(self, texts: Sequence[str], regions: Regions) -> dict[str, np.ndarray]:
        """Every head's logits, by output name, for texts paired row by row with ``regions``."""
        ...

    def close(self) -> None:
        """Release what the backend holds beyond memory (connections); called once, at shutdown."""
        ...


class OnnxBackend:
    name = "onnx"

    def __init__(
        self,
        model_dir: Path,
        graphs_dir: Path | None,
        variant: str,
        threads: int,
        length_groups: int = INFERENCE_GROUPS,
        lone_threads: int = 0,
    ):
        self.model = OnnxModel(
            model_dir,
            graphs_dir,
            variant=variant,
            threads=threads,
            length_groups=length_groups,
            lone_threads=lone_threads,
        )
        self.files = self.model.files
        self.provider = self.model.provider

    def detect(self, images: Sequence[Image.Image]) -> Regions:
        return self.model.detect(images)

    def fuse(self, texts: Sequence[str], regions: Regions) -> dict[str, np.ndarray]:
        return self.model.fuse(texts, regions)

    def close(self) -> None:
        """Nothing to release."""


class TorchBackend:
    """Eager PyTorch (``torch``) or the exported TorchScript graphs (``torchscript``), on the GPU
    when torch sees one (CUDA), else on the CPU.

    ``variant`` ``fp16`` runs on a GPU under autocast: matrix products and convolutions in half
    precision, norms and softmax kept in fp32 by autocast's own rules; on a CPU only ``fp32`` is
    offered (``ValueError`` otherwise).
    """

    def __init__(
        self,
        model_dir: Path,
        graphs_dir: Path | None,
        kind: str,
        threads: int,
        length_groups: int = INFERENCE_GROUPS,
        variant: str = "fp32",
    ):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.name = kind
        self.length_groups = length_groups
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.provider = self.device.type
        require_torch_variant(kind, variant, self.provider)
        self.half = variant == "fp16"
        self.files = ModelFiles.load(model_dir)
        if kind == "torchscript":
            from cmal.inference import verify_backend_graphs

            graphs = graphs_dir or model_dir / EXPORT_DIR
            detector, fusion = verify_backend_graphs(model_dir, graphs, "torchscript")
            self.detector = torch.jit.load(str(graphs / detector), map_location=self.device)
            self.fusion = torch.jit.load(str(graphs / fusion), map_location=self.device)
        else:
            from cmal.detector.io import load_detector
            from cmal.model.io import load_cmal

            self.detector = load_detector(model_dir)[0].to(self.device)
            self.fusion = load_cmal(model_dir)[0].to(self.device)

    def _run(self, module: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``module`` on ``inputs`` (copied to the device), its outputs back as fp32 / integer arrays."""
        torch = self.torch
        tensors = [torch.from_numpy(x).to(self.device, non_blocking=True) for x in inputs]
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.half else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            out = module(*tensors)
        return [(t.float() if t.is_floating_point() else t).cpu().numpy() for t in out]

    def detect(self, images: Sequence[Image.Image]) -> Regions:
        out = self._run(self.detector, [preprocess(images, self.files.image_size)])
        return Regions.from_outputs(out, [im.size for im in images])

    def fuse(self, texts: Sequence[str], regions: Regions) -> dict[str, np.ndarray]:
        return fuse_by_length(encode_batch(self.files, texts, regions), self._run_fusion, self.length_groups)

    def _run_fusion(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._run(self.fusion, [feeds[n] for n in FUSION_INPUTS])
        return dict(zip(FUSION_OUTPUTS, out, strict=True))

    def close(self) -> None:
        """Nothing to release."""


# batches in flight to Triton at once by default: enough to keep two model instances busy and give
# its dynamic batcher several API batches to merge, while the API's own CPU work stays small
TRITON_WORKERS = 4


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's limit, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def has_gpu(kind: str) -> bool:
    """Whether backend ``kind`` would run on a GPU here (CUDA in onnxruntime, or in torch; never
    for ``triton``, which runs elsewhere)."""
    if kind == "triton":
        return False
    if kind == "onnx":
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    import torch

    return bool(torch.cuda.is_available())


def parallelism(kind: str, workers: int, threads: int, processes: int = 1) -> tuple[int, int]:
    """Inference workers and threads per call of one of ``processes`` server processes, 0s
    resolved: on a CPU, the process's share of the usable cores (at least one), each call
    single-threaded when there are several (this model's graphs barely speed up with threads per
    call, while calls side by side scale with cores) and otherwise given the usable cores; one
    worker and the runtime's threads on a GPU. With ``triton`` the workers mostly wait on the
    network: `TRITON_WORKERS` batches in flight.

    The thread count on a CPU is always explicit: left to itself, ONNX Runtime starts one thread
    per physical core of the machine and pins each to its core, ignoring the process's affinity
    mask (a service started with ``taskset -c 0`` ran threads on core 1)."""
    if kind == "triton":
        return workers or TRITON_WORKERS, threads
    gpu = has_gpu(kind)
    if not workers:
        workers = 1 if gpu else max(1, usable_cores() // processes)
    if not threads and not gpu:
        threads = max(1, usable_cores() // (workers * processes))
    return workers, threads


def lone_threads(kind: str, workers: int, threads: int, processes: int = 1) -> int:
    """Threads for a detector call that starts while no other call of the process runs: the
    process's share of the usable cores, when its workers run one thread each beside each other
    (ONNX on a CPU, several workers); else 0, none. With one process per core a lone call has no
    idle core of its own to take, and another process's workers may be busy, so it gets none."""
    if kind != "onnx" or has_gpu(kind) or workers < 2:
        return 0
    share = usable_cores() // processes
    return share if share > threads else 0


def load_backend(
    model_dir: Path,
    graphs_dir: Path | None,
    kind: str,
    variant: str,
    threads: int,
    triton_url: str = "",
    timeout_s: float = 10.0,
    length_groups: int = INFERENCE_GROUPS,
    lone_threads: int = 0,
) -> Backend:
    """The backend ``kind`` ("onnx", "torch", "torchscript" or "triton") for a model directory,
    else ``ValueError``.

    ``variant`` (fp32, fp16, int8) picks the ONNX graphs; torch and torchscript offer fp32, and fp16
    on a GPU (`TORCH_VARIANTS`); ``threads`` 0 keeps the runtime's default;
    ``triton_url`` and ``timeout_s`` (each call's deadline) apply to ``triton``; ``length_groups``
    is the most sub-batches of similar text length an in-process fusion batch is cut into (1: never;
    Triton gets whole batches, for its own dynamic batcher to merge); ``lone_threads`` (ONNX): see
    `lone_threads`.
    """
    if kind == "triton":
        from service.triton_backend import TritonBackend

        return TritonBackend(model_dir, triton_url, timeout_s)
    if kind == "onnx":
        return OnnxBackend(model_dir, graphs_dir, variant, threads, length_groups, lone_threads)
    if kind in ("torch", "torchscript"):
        return TorchBackend(model_dir, graphs_dir, kind, threads, length_groups, variant)
    raise ValueError(f"unknown backend {kind!r}")


__all__ = ["DETECTOR_OUTPUTS", "Backend", "load_backend"]
