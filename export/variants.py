"""ONNX graph variants: ORT-optimised fp32, fp16 (for GPU) and int8 dynamic quantisation (for CPU)."""

from __future__ import annotations

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


def to_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of MatMul/Gemm weights (for CPUs)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a generic pre-processing hint at WARNING
    try:
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
        )
    finally:
        root.setLevel(level)
    return dst
