"""`cmal export --format triton`: every generated config parses as Triton's own ModelConfig
(tritonclient's protobuf) and agrees with the exported ONNX graphs it serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from cmal.inference import sha256
from cmal.model_dir import EXPORT_DIR, MANIFEST
from export.triton import TritonSettings, write_repository

ORT_TYPES = {"tensor(float)": mc.TYPE_FP32, "tensor(int64)": mc.TYPE_INT64, "tensor(bool)": mc.TYPE_BOOL}


@pytest.fixture(scope="module")
def repository(tiny_exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    graphs = tmp_path_factory.mktemp("triton") / "export"
    shutil.copytree(tiny_exported / EXPORT_DIR, graphs)
    manifest = json.loads((graphs / MANIFEST).read_text())
    return write_repository(graphs, manifest, TritonSettings(max_batch_size=16, max_queue_size=8))


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.mark.parametrize("model", ["detector", "fusion"])
@pytest.mark.parametrize("config", ["config.pbtxt", "configs/gpu.pbtxt", "configs/cpu.pbtxt"])
def test_each_config_matches_its_onnx_graph(repository: Path, model: str, config: str) -> None:
    parsed = parse(repository / model / config)
    session = ort.InferenceSession(
        str(repository / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert parsed.name == model and parsed.platform == "onnxruntime_onnx"
    assert parsed.max_batch_size == 16

    for declared, actual in ((parsed.input, session.get_inputs()), (parsed.output, session.get_outputs())):
        assert [t.name for t in declared] == [a.name for a in actual]
        for tensor, graph in zip(declared, actual, strict=True):
            assert tensor.data_type == ORT_TYPES[graph.type], tensor.name
            rest = [d if isinstance(d, int) else -1 for d in graph.shape[1:]]  # the batch dim is implicit
            if rest:
                assert list(tensor.dims) == rest, tensor.name
            else:  # a tensor that is only [batch]: Triton's [1] reshaped to a scalar
                assert list(tensor.dims) == [1] and list(tensor.reshape.shape) == [], tensor.name

    batching = parsed.dynamic_batching
    assert list(batching.preferred_batch_size) == [8, 16]  # only sizes within max_batch_size
    assert batching.default_queue_policy.max_queue_size == 8  # overload is rejected, not queued forever
    kind = mc.ModelInstanceGroup.KIND_CPU if config == "configs/cpu.pbtxt" else mc.ModelInstanceGroup.KIND_GPU
    assert [g.kind for g in parsed.instance_group] == [kind]


def test_the_repository_serves_the_exported_files_unchanged(repository: Path) -> None:
    manifest = json.loads((repository.parent / MANIFEST).read_text())
    record = json.loads((repository / "repository.json").read_text())
    assert record["model"] == manifest["model"]
    for model in ("detector", "fusion"):
        entry = record["models"][model]
        copied = repository / model / str(entry["version"]) / "model.onnx"
        assert sha256(copied) == entry["sha256"] == manifest["files"][entry["source"]]["sha256"]


def test_the_cpu_test_variant_serves_the_same_graphs_with_the_python_backend(repository: Path) -> None:
    from export.triton import PYTHON_MODEL, write_python_repository

    graphs = repository.parent
    manifest = json.loads((graphs / MANIFEST).read_text())
    variant = write_python_repository(
        graphs, manifest, TritonSettings(max_batch_size=16), sys_path=["/x/site"]
    )
    record = json.loads((variant / "repository.json").read_text())
    for model in ("detector", "fusion"):
        python, onnx = (
            parse(variant / model / "config.pbtxt"),
            parse(repository / model / "configs/cpu.pbtxt"),
        )
        assert python.backend == "python" and not python.platform
        assert [g.kind for g in python.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
        # the same tensors as the onnxruntime config, which the test above checks against the graph
        assert python.input == onnx.input and python.output == onnx.output
        assert python.parameters["threads"].string_value == "1"
        version = variant / model / "1"
        assert (version / "model.py").read_text() == PYTHON_MODEL.read_text()
        assert (version / "sys_path.txt").read_text() == "/x/site\n"
        assert sha256(version / "model.onnx") == record["models"][model]["sha256"]
        assert (
            record["models"][model]["sha256"]
            == manifest["files"][record["models"][model]["source"]]["sha256"]
        )
