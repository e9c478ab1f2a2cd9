"""Triton Python-backend model that runs one exported ONNX graph with ONNX Runtime on the CPU.

`export.triton.write_python_repository` copies this file as ``<model>/1/model.py`` beside the
graph (``model.onnx``) and ``sys_path.txt``, the folders holding numpy and onnxruntime (the
Python backend's stub runs its own interpreter and does not see a virtual environment). It is the
CPU test variant of the ``onnxruntime_onnx`` repository: the same graphs, for a ``tritonserver``
without the onnxruntime backend (the binary that ``nvidia-pytriton`` bundles).

Triton's dynamic batcher hands ``execute`` several requests at once; requests whose tensors
agree on every dimension but the batch are concatenated into one graph call, so batching across
callers happens here as it would in the onnxruntime backend.

Tensors cross the stub through DLPack, never ``as_numpy()`` / ``Tensor(name, array)``: the stub
(python_backend r24.10, pybind11 built against NumPy 1) reads a NumPy 2 dtype's item size from
the wrong field and moves 0 bytes. DLPack carries the dtype itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _path in reversed((_HERE / "sys_path.txt").read_text(encoding="utf-8").splitlines()):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)

import json  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

_default_unraisable = sys.unraisablehook


def _quiet_used_capsule(report: Any) -> None:
    """The stub renames a DLPack capsule it consumed to "used_dlpack" where NumPy expects
    "used_dltensor", so NumPy's capsule destructor reports a ValueError it then ignores (the
    stub frees the tensor itself). Drop exactly that report; pass every other one on."""
    if isinstance(report.exc_value, ValueError) and "PyCapsule_GetPointer" in str(report.exc_value):
        return
    _default_unraisable(report)


sys.unraisablehook = _quiet_used_capsule


class TritonPythonModel:
    """One ONNX graph behind Triton's Python-backend interface."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open the graph; the ``threads`` parameter sets ONNX Runtime's threads per call."""
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("threads", "1"))
        self.session = ort.InferenceSession(
            str(_HERE / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, from as few graph calls as the requests' shapes allow."""
        feeds = [
            {n: np.from_dlpack(pb_utils.get_input_tensor_by_name(r, n)) for n in self.inputs}
            for r in requests
        ]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, feed in enumerate(feeds):
            groups.setdefault(tuple(feed[n].shape[1:] for n in self.inputs), []).append(i)
        responses: list[Any] = [None] * len(requests)
        for members in groups.values():
            merged = {n: np.concatenate([feeds[i][n] for i in members]) for n in self.inputs}
            outputs = self.session.run(self.outputs, merged)
            start = 0
            for i in members:
                rows = len(feeds[i][self.inputs[0]])
                tensors = [
                    pb_utils.Tensor.from_dlpack(n, np.ascontiguousarray(o[start : start + rows]))
                    for n, o in zip(self.outputs, outputs, strict=True)
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += rows
        return responses
