"""A Triton Inference Server model repository from an export: ``detector`` and ``fusion`` as
``onnxruntime_onnx`` models with dynamic batching, written next to the other graphs.

Each model's ``config.pbtxt`` takes its input and output names, dtypes and dims from the exported
graphs as recorded in ``manifest.json`` (the batch dimension becomes ``max_batch_size``; a tensor
that is only ``[batch]`` gets ``dims: [1]`` reshaped to a scalar, Triton's convention). The
default ``config.pbtxt`` places one instance per GPU; ``configs/cpu.pbtxt`` (Triton's
``--model-config-name=cpu``) places CPU instances instead. ``max_queue_size`` bounds each model's
queue, so overload is rejected rather than queued forever. The graphs are copied as
``<model>/1/model.onnx``, and ``repository.json`` records their SHA-256, equal to the export
manifest's.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmal.inference import sha256
from cmal.model_dir import graph_file

TRITON_DIR = "triton"
DTYPES = {"float": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}


@dataclass(frozen=True)
class TritonSettings:
    """Batching and placement written into every model's config."""

    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 2000
    max_queue_size: int = 256  # requests beyond this are rejected (the API answers 429)
    gpu_instances: int = 1  # per GPU
    cpu_instances: int = 2


def _dims(shape: list[Any]) -> tuple[list[int], bool]:
    """Triton dims for a graph shape whose first dimension is the batch: named (dynamic)
    dimensions become -1; a shape that is only the batch becomes [1] and needs a reshape."""
    rest = [d if isinstance(d, int) else -1 for d in shape[1:]]
    return (rest, False) if rest else ([1], True)


def _tensor(spec: dict[str, Any]) -> str:
    if spec["dtype"] not in DTYPES:
        raise ValueError(f"{spec['name']}: dtype {spec['dtype']} has no Triton type here")
    dims, reshape = _dims(spec["shape"])
    lines = [f'    name: "{spec["name"]}"', f"    data_type: {DTYPES[spec['dtype']]}", f"    dims: {dims}"]
    if reshape:
        lines.append("    reshape: { shape: [ ] }")
    return "  {\n" + "\n".join(lines) + "\n  }"


def model_config(name: str, graph: dict[str, Any], settings: TritonSettings, kind: str) -> str:
    """One model's ``config.pbtxt`` text; ``kind`` is ``KIND_GPU`` or ``KIND_CPU``."""
    count = settings.gpu_instances if kind == "KIND_GPU" else settings.cpu_instances
    preferred = ", ".join(str(b) for b in settings.preferred_batch_sizes if b <= settings.max_batch_size)
    inputs = ",\n".join(_tensor(s) for s in graph["inputs"])
    outputs = ",\n".join(_tensor(s) for s in graph["outputs"])
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {settings.max_batch_size}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {settings.max_queue_delay_us}\n"
        f"  default_queue_policy {{ max_queue_size: {settings.max_queue_size} }}\n"
        "}\n"
        f"instance_group [ {{ kind: {kind} count: {count} }} ]\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


def write_repository(
    graphs_dir: Path, manifest: dict[str, Any], settings: TritonSettings | None = None
) -> Path:
    """Write ``graphs_dir/triton`` from the fp32 ONNX graphs of ``manifest``; returns its path."""
    settings = settings or TritonSettings()
    out = graphs_dir / TRITON_DIR
    if out.exists():
        shutil.rmtree(out)
    record: dict[str, Any] = {"model": manifest["model"], "models": {}}
    for name in ("detector", "fusion"):
        source = graphs_dir / graph_file(manifest, name, "fp32", fmt="onnx")
        folder = out / name
        (folder / "1").mkdir(parents=True)
        (folder / "configs").mkdir()
        shutil.copyfile(source, folder / "1" / "model.onnx")
        graph = manifest["graphs"][name]
        (folder / "config.pbtxt").write_text(model_config(name, graph, settings, "KIND_GPU"))
        (folder / "configs" / "cpu.pbtxt").write_text(model_config(name, graph, settings, "KIND_CPU"))
        record["models"][name] = {
            "version": 1,
            "source": source.name,
            "sha256": sha256(folder / "1" / "model.onnx"),
        }
    (out / "repository.json").write_text(json.dumps(record, indent=2) + "\n")
    return out
