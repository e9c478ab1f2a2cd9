"""A Triton Inference Server model repository from an export: ``detector`` and ``fusion`` as
``onnxruntime_onnx`` models with dynamic batching, written next to the other graphs.

Each model's ``config.pbtxt`` takes its input and output names, dtypes and dims from the exported
graphs as recorded in ``manifest.json`` (the batch dimension becomes ``max_batch_size``; a tensor
that is only ``[batch]`` gets ``dims: [1]`` reshaped to a scalar, Triton's convention). The
default ``config.pbtxt`` places one instance per GPU, as does ``configs/gpu.pbtxt``;
``configs/cpu.pbtxt`` places CPU instances instead (Triton's ``--model-config-name=cpu`` / ``gpu``
chooses, as the compose file's ``TRITON_MODEL_CONFIG`` does). ``max_queue_size`` bounds each model's
queue, so overload is rejected rather than queued forever. The graphs are copied as
``<model>/1/model.onnx``, and ``repository.json`` records their SHA-256, equal to the export
manifest's.

``write_python_repository`` writes the CPU test variant, ``triton-python/``: the same graphs
behind Triton's Python backend (``export/triton_python_model.py`` running ONNX Runtime), for a
``tritonserver`` without the onnxruntime backend, such as the one ``nvidia-pytriton`` bundles
(`cmal.tritonserver`), which the integration tests and ``cmal bench`` start.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmal.inference import sha256
from cmal.model_dir import graph_file

TRITON_DIR = "triton"
TRITON_PYTHON_DIR = "triton-python"
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")
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
    python_threads: int = 1  # ONNX Runtime threads per call in the Python-backend variant


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


def model_config(
    name: str, graph: dict[str, Any], settings: TritonSettings, kind: str, python: bool = False
) -> str:
    """One model's ``config.pbtxt`` text; ``kind`` is ``KIND_GPU`` or ``KIND_CPU``; ``python``
    selects the Python backend (`PYTHON_MODEL`) instead of the onnxruntime one."""
    runtime = 'backend: "python"\n' if python else 'platform: "onnxruntime_onnx"\n'
    parameters = (
        f'parameters: {{ key: "threads" value: {{ string_value: "{settings.python_threads}" }} }}\n'
        if python
        else ""
    )
    count = settings.gpu_instances if kind == "KIND_GPU" else settings.cpu_instances
    preferred = ", ".join(str(b) for b in settings.preferred_batch_sizes if b <= settings.max_batch_size)
    inputs = ",\n".join(_tensor(s) for s in graph["inputs"])
    outputs = ",\n".join(_tensor(s) for s in graph["outputs"])
    return (
        f'name: "{name}"\n'
        f"{runtime}"
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
        f"{parameters}"
    )


def _write(
    out: Path,
    graphs_dir: Path,
    manifest: dict[str, Any],
    configs: Callable[[str, dict[str, Any]], dict[str, str]],
) -> dict[str, Path]:
    """Write a repository at ``out`` (replacing it): each model's fp32 graph as ``1/model.onnx``,
    its config files (relative path -> text, from ``configs(name, graph)``) and
    ``repository.json``. Returns each model's version folder."""
    if out.exists():
        shutil.rmtree(out)
    record: dict[str, Any] = {"model": manifest["model"], "models": {}}
    versions = {}
    for name in ("detector", "fusion"):
        source = graphs_dir / graph_file(manifest, name, "fp32", fmt="onnx")
        version = out / name / "1"
        version.mkdir(parents=True)
        shutil.copyfile(source, version / "model.onnx")
        for relative, text in configs(name, manifest["graphs"][name]).items():
            (out / name / relative).parent.mkdir(exist_ok=True)
            (out / name / relative).write_text(text)
        record["models"][name] = {
            "version": 1,
            "source": source.name,
            "sha256": sha256(version / "model.onnx"),
        }
        versions[name] = version
    (out / "repository.json").write_text(json.dumps(record, indent=2) + "\n")
    return versions


def write_repository(
    graphs_dir: Path, manifest: dict[str, Any], settings: TritonSettings | None = None
) -> Path:
    """Write ``graphs_dir/triton`` from the fp32 ONNX graphs of ``manifest``; returns its path."""
    settings = settings or TritonSettings()

    def configs(name: str, graph: dict[str, Any]) -> dict[str, str]:
        return {
            "config.pbtxt": model_config(name, graph, settings, "KIND_GPU"),
            "configs/gpu.pbtxt": model_config(name, graph, settings, "KIND_GPU"),
            "configs/cpu.pbtxt": model_config(name, graph, settings, "KIND_CPU"),
        }

    _write(graphs_dir / TRITON_DIR, graphs_dir, manifest, configs)
    return graphs_dir / TRITON_DIR


def runtime_paths() -> list[str]:
    """The folders holding numpy and onnxruntime in this interpreter, for ``sys_path.txt``."""
    import numpy
    import onnxruntime

    paths = (str(Path(m.__file__ or "").resolve().parents[1]) for m in (numpy, onnxruntime))
    return list(dict.fromkeys(paths))


def write_python_repository(
    graphs_dir: Path,
    manifest: dict[str, Any],
    settings: TritonSettings | None = None,
    sys_path: list[str] | None = None,
) -> Path:
    """Write ``graphs_dir/triton-python``, the CPU test variant (see the module docstring), from
    the fp32 ONNX graphs of ``manifest``; ``sys_path`` defaults to this interpreter's
    `runtime_paths`. Returns its path."""
    settings = settings or TritonSettings()

    def configs(name: str, graph: dict[str, Any]) -> dict[str, str]:
        return {"config.pbtxt": model_config(name, graph, settings, "KIND_CPU", python=True)}

    out = graphs_dir / TRITON_PYTHON_DIR
    for version in _write(out, graphs_dir, manifest, configs).values():
        shutil.copyfile(PYTHON_MODEL, version / "model.py")
        (version / "sys_path.txt").write_text("\n".join(sys_path or runtime_paths()) + "\n")
    return out
