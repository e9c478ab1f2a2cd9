"""ONNX graph variants: ORT-optimised fp32, fp16 (for GPU) and int8 dynamic quantisation (for CPU)."""

from __future__ import annotations

import logging
from pathlib import Path


def optimise(src: Path, dst: Path) -> Path:
    """Save ``src`` after ONNX Runtime's provider-independent (basic) graph optimisations.

    Basic level only: constant folding and redundant-node removal, valid for every execution
    provider; the runtime applies its extended, provider-specific fusions when it loads the graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return dst


def to_fp16(src: Path, dst: Path) -> Path:
    """Half-precision weights and activations, fp32 inputs and outputs kept (for GPUs)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, disable_shape_infer=False)
    onnx.save(model, str(dst))
    return dst


class _DropMessage:
    """A logging filter dropping records whose message starts with ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def to_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm weights (for CPUs)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a generic hint on the root logger: drop that one message while it
    # runs, leaving the root logger's level and every other message alone
    hint = _DropMessage("Please consider")  # "… (to run) pre-processing before quantization"
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
        )
    finally:
        root.removeFilter(hint)
    return dst
