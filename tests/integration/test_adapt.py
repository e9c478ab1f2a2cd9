"""Bring your own images: end-to-end adaptation on a tiny shifted split (fine-tune, evaluate, export
with parity, serve an answer), and the detector route for a user who has boxes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tokenizers import Tokenizer

from cmal.cli import main as cli_main
from cmal.data.generate import generate_split
from cmal.detector.config import DetectorConfig
from cmal.detector.model import Detector
from cmal.detector.train import CLASS_PATH
from cmal.regions import detect_images
from cmal.train.adapt import HEADS

TINY = ["--epochs", "1", "--batch-size", "16", "--max-steps", "3", "--quiet"]


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shifted split (train 24 images, val 8), with VQA-only copies (no boxes: no objects.jsonl)."""
    root = tmp_path_factory.mktemp("shifted")
    generate_split(root / "train", seed=51, num_images=24, split="train", progress=False, domain="shifted")
    generate_split(root / "val", seed=52, num_images=8, split="val", progress=False, domain="shifted")
    for name in ("train", "val"):
        alone = root / f"{name}-vqa"
        alone.mkdir()
        (alone / "images").symlink_to(root / name / "images")
        (alone / "vqa.jsonl").write_text((root / name / "vqa.jsonl").read_text())
    return root


def parameters(model_dir: Path) -> dict[str, torch.Tensor]:
    """The detector's learned tensors (BatchNorm's running statistics left out)."""
    names = {n for n, _ in Detector(DetectorConfig.load(model_dir / "detector.json")).named_parameters()}
    return {k: v for k, v in load_file(str(model_dir / "detector.safetensors")).items() if k in names}


@pytest.mark.slow
def test_adapt_end_to_end_then_evaluate_export_and_serve(
    shifted: Path, demo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapted"
    train, val = shifted / "train-vqa", shifted / "val-vqa"
    args = ["train", "finetune", "--init", str(demo_dir), "--tasks", "vqa", "--train", str(train),
            "--val", str(val), "--out", str(out), "--detector-lr-scale", "2", *TINY]  # fmt: skip
    assert cli_main(args) == 2  # a detector learning rate, but no detector to adapt
    assert cli_main([*args, "--adapt-detector"]) == 0
    finetune = json.loads((out / "metrics.json").read_text())["finetune"]
    assert finetune["adapt_detector"] is True and finetune["detector_lr_scale"] == 2.0
    # the domain's nouns and colours became tokens (the graphs and service below read them)
    assert {"star", "hexagon", "pentagon"} <= set(finetune["new_words"])
    assert Tokenizer.from_file(str(out / "tokenizer.json")).encode("a star").tokens[1:3] == ["a", "star"]

    # the backbone and region-feature path trained; the detection heads (no boxes here) did not
    before, after = parameters(demo_dir), parameters(out)
    heads = [k for k in before if k.split(".")[0] in HEADS]
    path = [k for k in before if k.split(".")[0] not in HEADS]
    assert len(heads) == 8 and all(torch.equal(before[k], after[k]) for k in heads)
    assert path and all(not torch.equal(before[k], after[k]) for k in path)
    # ... and its region proposals stay those of the starting detector (distillation)
    images = sorted((shifted / "train" / "images").iterdir())
    old, new = detect_images(demo_dir, images, None, False), detect_images(out, images, None, False)
    assert old.valid.any() and np.mean(old.valid == new.valid) >= 0.9
    assert not np.allclose(old.features, new.features)  # the features it hands CMAL moved

    # evaluated per task from a folder holding only vqa.jsonl (the adapted detector's regions)
    report = tmp_path / "vqa.json"
    assert cli_main(["evaluate", "--model", str(out), "--data", str(val), "--task", "vqa", "--quiet",
                     "--output", str(report)]) == 0  # fmt: skip
    assert json.loads(report.read_text())["vqa"]["n"] == 32

    # exported unchanged, with parity
    from export.api import export_model

    manifest = export_model(out, "onnx", log=lambda *_: None)
    parity = manifest["parity"]["onnx_fp32"]
    assert max(parity["max_abs_diff"].values()) <= 1e-4 and parity["decision_mismatches"] == 0
    assert manifest["passed"] is True

    # served: the service answers from the adapted graphs, as the graphs do in process
    from cmal.client import Client
    from cmal.inference import OnnxModel, vqa_result
    from tests.service.test_process import start

    record = json.loads((val / "vqa.jsonl").read_text().splitlines()[0])
    image = Image.open(val / record["image"]).convert("RGB")
    answers = json.loads((out / "labels.json").read_text())["answers"]
    local = OnnxModel(out)
    expected = vqa_result(local.fuse([record["question"]], local.detect([image]))["vqa_logits"][0], answers)
    proc, url = start(out)
    try:
        with Client(url) as client:
            served = client.vqa(image, record["question"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert served["answer"] in answers
    assert served["answer"] == expected["answer"] and served["score"] == pytest.approx(
        expected["score"], abs=1e-4
    )


@pytest.mark.slow
def test_detector_with_boxes_new_classes_then_adapt_with_heads(
    shifted: Path, demo_dir: Path, tmp_path: Path
) -> None:
    train = shifted / "train"  # objects.jsonl with shapes and colours the demo detector lacks
    out = tmp_path / "ft"
    args = ["train", "finetune", "--init", str(demo_dir), "--tasks", "vqa", "--train", str(train),
            "--out", str(out), "--adapt-detector", *TINY]  # fmt: skip
    assert cli_main(args) == 2  # unknown classes: the error points to the detector route
    assert not (out / "cmal.safetensors").exists()

    det = tmp_path / "det"
    common = ["train", "detector", "--init", str(demo_dir), "--data", str(train), "--epochs", "1",
              "--batch-size", "8", "--quiet"]  # fmt: skip
    assert cli_main([*common, "--out", str(det)]) == 0
    labels = json.loads((det / "labels.json").read_text())
    old = json.loads((demo_dir / "labels.json").read_text())
    assert labels["tags"] == [*old["tags"], "hexagon", "pentagon", "ring", "star"]
    assert labels["attributes"] == [*old["attributes"], "black", "brown", "cyan", "lime", "pink"]
    assert labels["answers"] == old["answers"]  # the CMAL model came along
    config = DetectorConfig.load(det / "detector.json")
    assert (config.num_tags, config.num_attributes) == (9, 11)
    before, after = (
        load_file(str(demo_dir / "detector.safetensors")),
        load_file(str(det / "detector.safetensors")),
    )
    assert after["tag_head.weight"].shape == (9, before["tag_head.weight"].shape[1])
    assert (det / "cmal.safetensors").read_bytes() == (demo_dir / "cmal.safetensors").read_bytes()

    dropped = tmp_path / "dropped"
    assert cli_main([*common, "--out", str(dropped), "--drop-old-classes"]) == 0
    labels = json.loads((dropped / "labels.json").read_text())
    assert labels["tags"] == ["hexagon", "pentagon", "ring", "star"]
    assert labels["attributes"] == ["black", "brown", "cyan", "lime", "pink"]

    # now the boxes fit the vocabulary: adaptation trains the heads on them too
    args = ["train", "finetune", "--init", str(det), "--tasks", "vqa", "--train", str(train),
            "--out", str(out), "--adapt-detector", *TINY]  # fmt: skip
    assert cli_main(args) == 0
    assert json.loads((out / "synonyms.json").read_text())["star"] == "star"  # new classes anchor
    assert json.loads((out / "labels.json").read_text())["attribute_words"]["pink"] == "pink"
    assert json.loads((out / "synonyms.json").read_text())["box"] == "square"  # old words kept
    start_, end = parameters(det), parameters(out)
    assert all(
        not torch.equal(start_[k], end[k]) for k in start_ if k.split(".")[0] in ("heat", "box", "tag_head")
    )


@pytest.mark.slow
def test_detector_on_boxes_found_in_the_pixels(shifted: Path, demo_dir: Path, tmp_path: Path) -> None:
    train = shifted / "train-vqa"  # no objects.jsonl: the boxes come from the images
    common = ["train", "detector", "--data", str(train), "--boxes-from", "foreground", "--epochs", "1",
              "--batch-size", "8", "--quiet"]  # fmt: skip
    assert cli_main([*common, "--out", str(tmp_path / "alone")]) == 2  # no classes to start from
    plain = [a for a in common if a not in ("--boxes-from", "foreground")]
    assert cli_main([*plain, "--init", str(demo_dir), "--out", str(tmp_path / "plain")]) == 2  # no boxes
    det = tmp_path / "found"
    assert cli_main([*common, "--init", str(demo_dir), "--out", str(det), "--no-found-classes"]) == 0

    # boxes only: the vocabularies, classifiers and region-feature layers are the start's; the
    # proposals and the backbone trained
    labels, old = (json.loads((d / "labels.json").read_text()) for d in (det, demo_dir))
    assert (labels["tags"], labels["attributes"]) == (old["tags"], old["attributes"])
    before, after = parameters(demo_dir), parameters(det)
    for k in before:
        frozen = k.split(".")[0] in CLASS_PATH
        assert torch.equal(before[k], after[k]) == frozen, k
    detection = json.loads((det / "metrics.json").read_text())["detection"]
    assert detection["boxes_from"] == "foreground" and "tag_accuracy" not in detection
    assert detection["n_objects"] > 0 and "found_classes" not in detection
    assert (det / "cmal.safetensors").read_bytes() == (demo_dir / "cmal.safetensors").read_bytes()

    # with the classes found among the objects and named from the questions (the default): they
    # join the vocabularies after the start's own, the classifiers and region features train on
    # them, and the names' synonyms join the model's
    classes = tmp_path / "classes"
    assert cli_main([*common, "--init", str(demo_dir), "--out", str(classes)]) == 0
    detection = json.loads((classes / "metrics.json").read_text())["detection"]
    found = detection["found_classes"]
    labels = json.loads((classes / "labels.json").read_text())
    for key, kind in (("tags", "shape"), ("attributes", "colour")):
        names = found[kind]["names"]
        assert len(names) == found[kind]["classes"] >= 2
        assert labels[key] == [*old[key], *(n for n in dict.fromkeys(names) if n not in old[key])]
    assert "tag_accuracy" in detection and "attribute_accuracy" in detection
    # the rings' holes: the colour path looks two cells each way (boxes only: the start's one)
    configs = [json.loads((d / "detector.json").read_text()) for d in (classes, det)]
    assert configs[0]["colour_window"] == found["colour_window"] == 5 and configs[1]["colour_window"] == 3
    synonyms = json.loads((classes / "synonyms.json").read_text())
    assert all(synonyms[w] == name for w, name in found["shape"]["synonyms"].items())
    assert all(labels["attribute_words"][w] == n for w, n in found["colour"]["synonyms"].items())
    # the size words read off the questions join the start's (its own keep their meaning)
    assert labels["size_words"] == {**found["size_words"], **old["size_words"]}
    assert set(found["size_words"].values()) <= {"small", "large"}
    before, after = parameters(demo_dir), parameters(classes)
    assert not torch.equal(before["feature.0.weight"], after["feature.0.weight"])
    # found again from a detector that has them: replaced, not added twice
    again = tmp_path / "again"
    assert cli_main([*common, "--init", str(classes), "--out", str(again)]) == 0
    assert sorted(json.loads((again / "labels.json").read_text())["tags"]) == sorted(labels["tags"])
    # fine-tuning starts from it (the concept vocabulary grew) and adapts it end to end
    out = tmp_path / "tuned"
    args = ["train", "finetune", "--init", str(classes), "--tasks", "vqa", "--train", str(train),
            "--val", str(shifted / "val-vqa"), "--out", str(out), "--adapt-detector", *TINY]  # fmt: skip
    assert cli_main(args) == 0
    assert json.loads((out / "labels.json").read_text())["tags"] == labels["tags"]


def test_detector_moved_to_a_larger_input(shifted: Path, demo_dir: Path, tmp_path: Path) -> None:
    """`--image-size` with `--init`: the same convolutions read larger images (the shifted domain's
    are 160 px); a size the backbone cannot halve four times is refused."""
    common = [
        "train",
        "detector",
        "--data",
        str(shifted / "train-vqa"),
        "--boxes-from",
        "foreground",
        "--init",
        str(demo_dir),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--no-found-classes",
        "--quiet",
    ]  # fmt: skip (the size alone: boxes only)
    assert cli_main([*common, "--out", str(tmp_path / "odd"), "--image-size", "150"]) == 2
    out = tmp_path / "found-160"
    assert cli_main([*common, "--out", str(out), "--image-size", "160"]) == 0
    assert json.loads((out / "detector.json").read_text())["image_size"] == 160
    assert json.loads((demo_dir / "detector.json").read_text())["image_size"] == 128
    images = sorted((shifted / "train-vqa" / "images").glob("*.png"))[:4]
    table = detect_images(out, images, None, False)
    assert table.valid.any()  # it proposes regions
    sides = np.array([Image.open(p).size for p in images], np.float32)  # boxes in the images' pixels
    boxes = table.boxes[table.valid]
    assert (boxes >= -1).all() and (boxes[:, 2:] <= sides.max() + 1).all()
