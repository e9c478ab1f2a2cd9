"""FLOPs of the exported graphs from the shapes they actually ran with, and the machine's dense
matmul rate, so the engine's speed can be stated as a share of what the hardware does.

The shapes come from ONNX Runtime's own profiler (each node's input and output shapes as
executed), so nothing is guessed from configs: a matrix product counts 2 · output elements · K,
a convolution 2 · output elements · input channels per group · kernel area.
Everything else (softmax, layer norm, adds) is left out: it is a few percent of the total here
and no matmul peak would cover it.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PRODUCTS = ("MatMul", "FusedMatMul", "Gemm", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")


def node_flops(op: str, inputs: Sequence[Sequence[int]], output: Sequence[int]) -> int:
    """Multiply-add FLOPs (×2) of one executed node, 0 for ops that are not counted.

    Each output element of a matrix product takes K multiply-adds, K being the first input's last
    dimension (the profiler lists only that input when the weight was pre-packed); each output
    element of a convolution takes input channels per group × kernel area.
    """
    if op in PRODUCTS:
        return 2 * math.prod(output) * inputs[0][-1]
    if op in ("Conv", "FusedConv") and len(inputs) > 1:
        weight = inputs[1]  # (out_channels, in_channels / groups, kh, kw)
        return 2 * math.prod(output) * math.prod(weight[1:])
    return 0


def _shapes(entry: dict[str, Any], key: str) -> list[list[int]]:
    return [list(next(iter(d.values()))) for d in entry.get("args", {}).get(key, [])]


def profiled_flops(make_session: Callable[[Any], Any], feeds: dict[str, np.ndarray]) -> int:
    """FLOPs of one run of a session built by ``make_session(options)`` on ``feeds``."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = make_session(options)
        session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
    total = 0
    for entry in trace:
        if entry.get("cat") != "Node" or not entry.get("name", "").endswith("_kernel_time"):
            continue
        op = entry["args"].get("op_name", "")
        outputs = _shapes(entry, "output_type_shape")
        total += node_flops(op, _shapes(entry, "input_type_shape"), outputs[0] if outputs else [])
    return total


def engine_flops_per_sample(model: Any, images: Sequence[Any], texts: Sequence[str]) -> dict[str, float]:
    """FLOPs per sample of ``model``'s (a `cmal.inference.OnnxModel`) detector and fusion graphs at
    the batch size of ``images``."""
    import onnxruntime as ort

    from cmal.inference import FUSION_INPUTS, encode_batch, preprocess

    batch = len(images)
    providers = model.providers

    def session(path: Path) -> Callable[[Any], Any]:
        return lambda options: ort.InferenceSession(str(path), options, providers=providers)

    pixels = preprocess(images, model.files.image_size)
    regions = model.detect(images)
    feeds = encode_batch(model.files, texts, regions)
    detector = profiled_flops(session(model.detector_path), {"images": pixels})
    fusion = profiled_flops(session(model.fusion_path), {n: feeds[n] for n in FUSION_INPUTS})
    return {"detector": detector / batch, "fusion": fusion / batch, "total": (detector + fusion) / batch}


def matmul_rate(
    threads: int, size: tuple[int, int, int] = (2048, 768, 3072), seconds: float = 3.0, gpu: bool = False
) -> float:
    """The best dense MatMul rate (FLOP/s) ONNX Runtime reaches here, on a product shaped like a
    transformer layer's feed-forward: fp32 on the CPU with ``threads`` threads (0: its default),
    or fp16 on the GPU (CUDA) when ``gpu``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    m, k, n = size
    if gpu:
        m, k, n = 8 * m, 2 * k, 2 * n  # enough work to fill a GPU
    dtype, onnx_type = (np.float16, TensorProto.FLOAT16) if gpu else (np.float32, TensorProto.FLOAT)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info("a", onnx_type, [m, k])],
        [helper.make_tensor_value_info("c", onnx_type, [m, n])],
        [onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype(dtype), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = ["CUDAExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    a = np.random.default_rng(1).standard_normal((m, k)).astype(dtype)
    if gpu:  # input and output stay on the device: the copies are not the matmul's
        binding = session.io_binding()
        binding.bind_ortvalue_input("a", ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0))
        binding.bind_output("c", "cuda")

        def run() -> None:
            session.run_with_iobinding(binding)
    else:

        def run() -> None:
            session.run(None, {"a": a})

    run()
    best = math.inf
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best


def torch_flops_per_sample(backend: Any, images: Sequence[Any], texts: Sequence[str]) -> dict[str, float]:
    """FLOPs per sample of an eager-PyTorch backend's (`service.runtime.TorchBackend`) detector and
    fusion at the batch size of ``images``, counted by torch's own ``FlopCounterMode`` from the
    shapes the products ran with (matrix products, convolutions and attention; the same operations
    `node_flops` counts in a graph)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = len(images)
    counter = FlopCounterMode(display=False)
    with counter:
        regions = backend.detect(images)
    detector = counter.get_total_flops()
    counter = FlopCounterMode(display=False)
    with counter:
        backend.fuse(texts, regions)
    fusion = counter.get_total_flops()
    return {"detector": detector / batch, "fusion": fusion / batch, "total": (detector + fusion) / batch}


def torch_matmul_rate(gpu: bool, seconds: float = 3.0) -> float:
    """The best dense matrix-product rate (FLOP/s) torch reaches here: fp16 on the GPU on a product
    large enough to fill it (8192³, timed with CUDA events), or fp32 on the CPU on a
    feed-forward-shaped one, on torch's current threads."""
    import torch

    if gpu:
        m = k = n = 8192
        a = torch.randn(m, k, device="cuda", dtype=torch.float16)
        b = torch.randn(k, n, device="cuda", dtype=torch.float16)
    else:
        m, k, n = 2048, 768, 3072
        a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)
    best = math.inf
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        if gpu:
            began, ended = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            began.record()
            torch.matmul(a, b)
            ended.record()
            ended.synchronize()
            elapsed = began.elapsed_time(ended) / 1000
        else:
            start = time.perf_counter()
            torch.matmul(a, b)
            elapsed = time.perf_counter() - start
        best = min(best, elapsed)
    return 2 * m * k * n / best
