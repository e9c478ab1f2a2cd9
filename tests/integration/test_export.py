"""Export: every format and variant, dynamic axes, parity, manifest, refusing bad graphs, no torch.

The tiny model is randomly initialised, so these tests check export mechanics only (graphs, fp32
parity, the manifest); whether fp16 / int8 may stand in for fp32 is a property of a trained model
and is checked on the demo model (`test_reduced_precision_variants_of_the_demo_model_pass_the_policy`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cmal.inference import GraphMismatch, OnnxModel, read_manifest
from export.api import export_model
from export.parity import VARIANT_POLICY, VariantPolicy

NO_TORCH_SCRIPT = """
import sys
from pathlib import Path
from PIL import Image
from cmal.inference import OnnxModel, entailment_result, grounding_result, vqa_result
model = OnnxModel(Path(sys.argv[1]))
image = Image.open(sys.argv[2])
regions = model.detect([image, image.resize((200, 150))])
out = model.fuse(["there is a red circle.", "the big box"], regions)
grounded = grounding_result(out["rec_logits"][1], regions, 1, out["itm_logits"][1], None)["box"] is not None
print(entailment_result(out["ve_logits"][0])["label"], grounded)
print("TORCH", "torch" in sys.modules)
"""


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    model = tmp_path_factory.mktemp("exp") / "model"
    shutil.copytree(tiny_model_dir, model)
    manifest = export_model(model, "all", fp16=True, int8=True, log=lambda *_: None, variant_policy=None)
    return model, manifest


def test_all_formats_and_variants_are_written_with_a_manifest(exported) -> None:  # type: ignore[no-untyped-def]
    model, manifest = exported
    out = model / "export"
    expected = {
        "detector.onnx",
        "fusion.onnx",
        "detector.fp16.onnx",
        "fusion.fp16.onnx",
        "fusion.int8.onnx",
        "detector.ts",
        "fusion.ts",
    }
    assert set(manifest["files"]) == expected
    for name in expected:
        assert (out / name).is_file()
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["model"]["name"] == "model" and len(on_disk["model"]["version"]) == 12
    assert on_disk["opset"] == 18 and on_disk["passed"] is True
    assert set(on_disk["weights"]) == {"detector.safetensors", "cmal.safetensors"}
    fusion_inputs = {i["name"]: i for i in on_disk["graphs"]["fusion"]["inputs"]}
    assert (
        fusion_inputs["input_ids"]["shape"] == ["batch", "tokens"]
        and fusion_inputs["input_ids"]["dtype"] == "int64"
    )
    assert fusion_inputs["region_features"]["shape"][:2] == ["batch", "regions"]
    outputs = [o["name"] for o in on_disk["graphs"]["fusion"]["outputs"]]
    assert outputs == ["ve_logits", "itm_logits", "vqa_logits", "rec_logits"]
    for name in ("detector.onnx", "fusion.onnx"):
        onnx.checker.check_model(str(out / name))


def test_parity_figures(exported) -> None:  # type: ignore[no-untyped-def]
    _, manifest = exported
    for key in ("onnx_fp32", "torchscript"):
        report = manifest["parity"][key]
        assert report["batches"] == [1, 7, 32]
        assert max(report["max_abs_diff"].values()) <= 1e-4 and report["decision_mismatches"] == 0
    for key in ("onnx_fp16", "onnx_int8"):  # recorded, not judged: the tiny model is untrained
        report = manifest["parity"][key]
        assert report["examples"] == VARIANT_POLICY.examples
        assert report["passed"] is None and report["policy"] is None
        assert 0.0 <= report["decision_agreement_all"] <= 1.0
        assert set(report["accuracy_change_points"]) == {"ve", "rec", "vqa", "itm"}
    assert manifest["passed"] is True


@pytest.mark.slow
def test_reduced_precision_variants_of_the_demo_model_pass_the_policy(demo_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "shapes-demo"
    shutil.copytree(demo_dir, model, ignore=shutil.ignore_patterns("export"))
    manifest = export_model(model, "onnx", fp16=True, int8=True, log=lambda *_: None)
    for key in ("onnx_fp16", "onnx_int8"):
        report = manifest["parity"][key]
        assert report["policy"] == asdict(VARIANT_POLICY)
        # a trained model decides most examples with a margin; otherwise the gate tests nothing
        assert report["margin_examples"] >= report["examples"] // 2, report
        assert report["decision_agreement"] >= VARIANT_POLICY.min_agreement, report
        assert all(
            abs(v) < VARIANT_POLICY.max_accuracy_change_points
            for v in report["accuracy_change_points"].values()
        ), report
        assert report["passed"] is True
    assert manifest["passed"] is True


def test_a_variant_failing_the_policy_fails_the_export(tiny_model_dir: Path, tmp_path: Path) -> None:
    from export.api import ParityError

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    strict = VariantPolicy(min_agreement=1.01)  # unreachable: the export must refuse
    with pytest.raises(ParityError, match="onnx_int8"):
        export_model(model, "onnx", int8=True, log=lambda *_: None, variant_policy=strict)
    written = json.loads((model / "export" / "manifest.json").read_text())
    assert written["passed"] is False and written["parity"]["onnx_int8"]["passed"] is False
    assert written["parity"]["onnx_fp32"]["passed"] is True


def test_dynamic_axes_take_shapes_never_seen_at_export(exported, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    from cmal.model.io import load_cmal
    from export.graphs import fusion_example

    model_dir, _ = exported
    cmal_model, _, _ = load_cmal(tiny_model_dir)
    session = ort.InferenceSession(
        str(model_dir / "export" / "fusion.onnx"), providers=["CPUExecutionProvider"]
    )
    script = torch.jit.load(str(model_dir / "export" / "fusion.ts"))
    names = [i.name for i in session.get_inputs()]
    for batch, tokens, regions, anchors in (
        (1, 3, 10, 1),
        (5, 40, 10, 7),
        (3, 17, 36, 2),
    ):  # exported at (2, 12, 10, 3)
        x = fusion_example(cmal_model, batch, tokens, regions, anchors, seed=batch)
        with torch.no_grad():
            want = [t.numpy() for t in cmal_model(*x)]
            ts = [t.numpy() for t in script(*x)]
        got = session.run(None, {n: t.numpy() for n, t in zip(names, x, strict=True)})
        for a, b, c in zip(want, got, ts, strict=True):
            assert a.shape == b.shape == c.shape
            assert np.abs(a - b).max() <= 1e-4 and np.abs(a - c).max() <= 1e-4


def test_corrupted_or_mismatched_graphs_are_refused(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model_dir, _ = exported
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    OnnxModel(copy)  # intact: loads
    graph = copy / "export" / "fusion.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(GraphMismatch, match="checksum differs"):
        OnnxModel(copy)

    # a backend checks only the graphs it loads (a start hashes nothing it never opens), while a
    # full check of the export still finds every altered file
    unused = tmp_path / "unused"
    shutil.copytree(model_dir, unused)
    ts = next(n for n, i in json.loads((unused / "export" / "manifest.json").read_text())["files"].items()
              if i["format"] == "torchscript" and i["graph"] == "fusion")  # fmt: skip
    (unused / "export" / ts).write_bytes(b"not a graph")
    OnnxModel(unused)
    with pytest.raises(GraphMismatch, match="checksum differs"):
        read_manifest(unused, unused / "export")

    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    weights = other / "cmal.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    state["ve_head.mlp.net.3.bias"] = state["ve_head.mlp.net.3.bias"] + 1
    save_file(state, str(weights))
    with pytest.raises(GraphMismatch, match="other weights"):
        read_manifest(other, other / "export")
    with pytest.raises(FileNotFoundError, match="cmal export"):
        read_manifest(other, tmp_path / "nowhere")


def test_onnx_path_runs_without_torch(exported, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cmal.data.generate import generate_split

    model_dir, _ = exported
    generate_split(tmp_path, seed=5, num_images=1, split="test", progress=False)
    script = tmp_path / "run.py"
    script.write_text(NO_TORCH_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(model_dir), str(tmp_path / "images" / "000000.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH False" in result.stdout
    assert result.stdout.split()[0] in ("entailment", "neutral", "contradiction")


def test_variants_without_a_verdict_are_not_served(exported) -> None:  # type: ignore[no-untyped-def]
    model_dir, _ = exported  # exported with variant_policy=None: fp16 / int8 recorded, not judged
    OnnxModel(model_dir)  # fp32 passed its gate: served
    for variant in ("fp16", "int8"):
        with pytest.raises(GraphMismatch, match="quantisation policy"):
            OnnxModel(model_dir, variant=variant)


def test_a_model_with_anchor_markers_exports_with_parity(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The markers (CMAP off) are plain ops in both graphs: the anchors still change the answer."""
    import onnxruntime as ort

    from cmal.model.io import load_cmal, save_cmal
    from export.graphs import fusion_example

    plain, tokenizer, vocab = load_cmal(tiny_model_dir)
    model_dir = tmp_path / "marked"
    shutil.copytree(tiny_model_dir, model_dir)
    marked = type(plain)(plain.config.replace(cmap_mode="off", anchor_markers=True))
    marked.load_state_dict({**marked.state_dict(), **plain.state_dict()})
    torch.nn.init.normal_(marked.anchor_markers.weight, std=1.0)  # type: ignore[union-attr]
    save_cmal(marked.eval(), model_dir, tokenizer, vocab)
    manifest = export_model(model_dir, "all", log=lambda *_: None)
    assert manifest["passed"] is True
    session = ort.InferenceSession(
        str(model_dir / "export" / "fusion.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    x = fusion_example(marked, 3, 17, 10, 4, seed=3)
    without = list(x)
    without[-1] = torch.zeros_like(x[-1])  # anchor_valid: no pairs, so no markers
    for inputs in (x, without):
        with torch.no_grad():
            want = [t.numpy() for t in marked(*inputs)]
        got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
        assert all(np.abs(a - b).max() <= 1e-4 for a, b in zip(want, got, strict=True))
    with torch.no_grad():
        assert not torch.allclose(marked(*x).vqa_logits, marked(*without).vqa_logits)
