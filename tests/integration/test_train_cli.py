"""The training and evaluation commands end to end on a tiny split: pre-train, fine-tune (any task
subset), resume, evaluate to JSON, and fine-tune onto a new VQA answer vocabulary."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cmal.cli import main as cli_main
from cmal.data.generate import generate_split
from cmal.data.vocab import GENERIC_NOUNS
from cmal.tasks import TASK_IDS

CMAL = str(Path(sys.executable).with_name("cmal"))
TINY = ["--epochs", "1", "--batch-size", "16", "--max-steps", "3", "--quiet"]


def cmal(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([CMAL, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train_cli")
    generate_split(root / "train", seed=41, num_images=24, split="train", progress=False)
    generate_split(root / "val", seed=42, num_images=8, split="val", progress=False)
    return root / "train", root / "val"


@pytest.mark.slow
def test_pretrain_finetune_evaluate(splits: tuple[Path, Path], demo_dir: Path, tmp_path: Path) -> None:
    train, val = splits
    pre = tmp_path / "pre"
    cmal(
        "train",
        "pretrain",
        "--data",
        str(train),
        "--val",
        str(val),
        "--detector",
        str(demo_dir),
        "--out",
        str(pre),
        *TINY,
    )
    for name in (
        "cmal.safetensors",
        "cmal.json",
        "tokenizer.json",
        "labels.json",
        "synonyms.json",
        "detector.safetensors",
    ):
        assert (pre / name).is_file(), name
    metrics = json.loads((pre / "metrics.json").read_text())
    assert {"val_mlm", "val_itm", "val_amc"} <= set(metrics["pretrain"])
    labels = json.loads((pre / "labels.json").read_text())  # new models anchor by colour as well
    assert labels["attribute_words"]["violet"] == "purple" and labels["attribute_words"]["red"] == "red"

    ft = tmp_path / "ft"
    cmal(
        "train",
        "finetune",
        "--init",
        str(pre),
        "--tasks",
        "ve,rec,vqa,itm",
        "--train",
        str(train),
        "--val",
        str(val),
        "--out",
        str(ft),
        *TINY,
    )
    out = tmp_path / "eval.json"
    result = cmal(
        "evaluate", "--model", str(ft), "--data", str(val), "--task", "all", "--output", str(out), "--quiet"
    )
    results = json.loads(out.read_text())
    assert set(results) == {"detection", "ve", "rec", "vqa", "itm"}
    for task in ("ve", "rec", "vqa", "itm"):
        assert 0.0 <= results[task]["accuracy"] <= 1.0 and results[task]["n"] > 0
    rec_lines = (val / "rec.jsonl").read_text().splitlines()
    assert results["ve"]["n"] == 24 and results["rec"]["n"] == len(rec_lines) and results["vqa"]["n"] == 32
    # the validation folder has expressions that name nothing: fine-tuning chose when grounding
    # declines, and `cmal calibrate` on the same folder chooses the same threshold
    assert any(json.loads(line)["box"] is None for line in rec_lines)
    chosen = json.loads((ft / "labels.json").read_text())["grounding_decline_below"]
    calibration = json.loads((ft / "metrics.json").read_text())["calibration"]
    assert isinstance(chosen, float) and calibration["threshold"] == chosen
    assert calibration["absent"] + calibration["present"] == len(rec_lines)
    printed = cmal("calibrate", "--model", str(ft), "--data", str(val), "--quiet").stdout
    assert "declined_absent" in printed
    assert json.loads((ft / "labels.json").read_text())["grounding_decline_below"] == chosen
    assert 0.0 <= results["itm"]["auc"] <= 1.0
    assert "vqa" in result.stdout and "accuracy" in result.stdout  # the printed table
    # each task alone, from a folder holding only that task's file and the images
    for task in TASK_IDS:
        alone = tmp_path / f"only-{task}"
        shutil.copytree(val, alone, ignore=lambda _, names: [n for n in names if n.endswith(".jsonl")])
        shutil.copyfile(val / f"{task}.jsonl", alone / f"{task}.jsonl")
        single = tmp_path / f"only-{task}.json"
        args = ["evaluate", "--model", str(ft), "--data", str(alone), "--task", task, "--quiet"]
        assert cli_main([*args, "--output", str(single)]) == 0
        assert json.loads(single.read_text()) == {task: results[task]}  # the same figures as with all
        assert cli_main(["evaluate", "--model", str(ft), "--data", str(alone), "--quiet"]) == 0  # all
    assert cli_main(["evaluate", "--model", str(ft), "--data", str(alone), "--task", "ve", "--quiet"]) == 2
    # fine-tuned models leave words that match several regions unswapped, and say so
    assert json.loads((ft / "labels.json").read_text())["skip_ambiguous_anchors"] is True
    assert json.loads((ft / "labels.json").read_text())["strict_attribute_anchors"] is False
    assert json.loads((ft / "labels.json").read_text())["generic_nouns"] == []  # not asked for
    assert json.loads((ft / "labels.json").read_text())["group_anchors"] is False
    assert json.loads((pre / "labels.json").read_text())["skip_ambiguous_anchors"] is False

    # a task subset, from scratch (a folder with only a detector): the no-pre-training baseline
    detector_only = tmp_path / "detector-only"
    detector_only.mkdir()
    for name in ("detector.safetensors", "detector.json", "labels.json"):
        shutil.copyfile(demo_dir / name, detector_only / name)
    sub = tmp_path / "sub"
    cmal(
        "train",
        "finetune",
        "--init",
        str(detector_only),
        "--tasks",
        "rec",
        "--train",
        str(train),
        "--out",
        str(sub),
        "--swap-ambiguous",
        "--strict-attribute-anchors",
        "--generic-noun-anchors",
        "--group-anchors",
        "--layers",
        "1",
        *TINY,
    )
    assert json.loads((sub / "cmal.json").read_text())["layers"] == 1  # from scratch: any depth
    assert json.loads((sub / "metrics.json").read_text())["finetune"]["tasks"] == ["rec"]
    assert json.loads((sub / "metrics.json").read_text())["finetune"]["skip_ambiguous_anchors"] is False
    assert json.loads((sub / "labels.json").read_text())["skip_ambiguous_anchors"] is False
    assert json.loads((sub / "labels.json").read_text())["strict_attribute_anchors"] is True
    # fitted on the training split's boxes: the small / large boundary lies between their sides
    (small, boundary), large = json.loads((sub / "labels.json").read_text())["size_classes"]
    assert small == "small" and large == ["large", None] and 0 < boundary < 1
    assert json.loads((sub / "metrics.json").read_text())["finetune"]["strict_attribute_anchors"] is True
    assert json.loads((sub / "metrics.json").read_text())["finetune"]["pretrained"] is False
    # generic nouns anchor by the colour and size they name, plurals to all they match, from then on
    assert json.loads((sub / "labels.json").read_text())["generic_nouns"] == list(GENERIC_NOUNS)
    assert json.loads((sub / "metrics.json").read_text())["finetune"]["generic_nouns"] == list(GENERIC_NOUNS)
    later = tmp_path / "later"
    cmal(
        "train",
        "finetune",
        "--init",
        str(sub),
        "--tasks",
        "rec",
        "--train",
        str(train),
        "--out",
        str(later),
        *TINY,
    )
    assert json.loads((later / "labels.json").read_text())["generic_nouns"] == list(GENERIC_NOUNS)
    assert json.loads((later / "labels.json").read_text())["group_anchors"] is True
    assert json.loads((sub / "metrics.json").read_text())["finetune"]["group_anchors"] is True


@pytest.mark.slow
def test_pretraining_swap_options_are_used_and_recorded(
    splits: tuple[Path, Path], demo_dir: Path, tmp_path: Path
) -> None:
    train, val = splits
    common = ["train", "pretrain", "--data", str(train), "--val", str(val), "--detector", str(demo_dir)]
    out = tmp_path / "pre"
    cmal(*common, "--out", str(out), "--swap-fraction", "1", "--false-swap", "0", "--plain-pass",
        "--geometry-mlm", "0.6", "--layers", "3", *TINY)  # fmt: skip
    assert json.loads((out / "cmal.json").read_text())["layers"] == 3
    recorded = json.loads((out / "metrics.json").read_text())["pretrain"]
    assert (recorded["swap_fraction"], recorded["false_swap"], recorded["plain_pass"]) == (1.0, 0.0, True)
    assert recorded["geometry_mlm"] == 0.6
    assert 0.0 <= recorded["val_size_word_accuracy"] <= 1.0  # the geometry probe ran
    for option, bad in (("--false-swap", "1.5"), ("--false-swap", "-0.1"), ("--false-swap", "half"),
                        ("--layers", "0"), ("--layers", "two")):  # fmt: skip
        result = subprocess.run(
            [CMAL, *common, "--out", str(tmp_path / "bad"), option, bad, *TINY],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2 and option in result.stderr, result.stderr
        assert not (tmp_path / "bad").exists()

    # a pre-trained model's depth is fixed: asking fine-tuning for another is a clear error
    ft = ["train", "finetune", "--init", str(out), "--tasks", "ve", "--train", str(train), *TINY]
    deeper = [CMAL, *ft, "--out", str(tmp_path / "deeper"), "--layers", "4"]
    result = subprocess.run(deeper, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "layers=3" in result.stderr and "layers=4" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "deeper").exists()
    cmal(*ft, "--out", str(tmp_path / "same"), "--layers", "3")  # the same depth is fine


@pytest.mark.slow
def test_resume_continues_after_the_last_epoch(
    splits: tuple[Path, Path], demo_dir: Path, tmp_path: Path
) -> None:
    train, _ = splits
    out = tmp_path / "ft"
    common = [
        "train",
        "finetune",
        "--init",
        str(demo_dir),
        "--tasks",
        "ve",
        "--train",
        str(train),
        "--out",
        str(out),
    ]
    cmal(*common, "--epochs", "1", "--batch-size", "16", "--quiet")
    first = json.loads((out / "checkpoint" / "trainer.json").read_text())
    assert first["epoch"] == 1
    result = subprocess.run(
        [CMAL, *common, "--epochs", "2", "--batch-size", "16", "--resume"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stderr + result.stdout
    second = json.loads((out / "checkpoint" / "trainer.json").read_text())
    assert second["epoch"] == 2 and second["step"] == first["step"] * 2
    assert [h["epoch"] for h in second["history"]] == [1, 2]


@pytest.mark.slow
def test_finetune_on_a_new_answer_vocabulary(
    splits: tuple[Path, Path], demo_dir: Path, tmp_path: Path
) -> None:
    train, _ = splits
    translate = {"yes": "ja", "no": "nein", "red": "rot", "green": "grün", "blue": "blau"}
    data = tmp_path / "vqa-de"
    data.mkdir()
    (data / "images").symlink_to(train / "images")
    lines = []
    for line in (train / "vqa.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec["answers"] = [translate.get(a, f"x-{a}") for a in rec["answers"]]
        lines.append(json.dumps(rec))
    (data / "vqa.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "ft"
    cmal(
        "train",
        "finetune",
        "--init",
        str(demo_dir),
        "--tasks",
        "vqa",
        "--train",
        str(data),
        "--out",
        str(out),
        *TINY,
    )
    answers = json.loads((out / "labels.json").read_text())["answers"]
    assert "ja" in answers and "nein" in answers and "yes" not in answers
    assert all(a in translate.values() or a.startswith("x-") for a in answers)

    from cmal.evaluate import predict
    from cmal.model.io import load_cmal
    from cmal.regions import detect_folder
    from cmal.train.examples import load_examples

    model, tokenizer, vocab = load_cmal(out)
    table = detect_folder(out, data, progress=False)
    examples = load_examples(data, ("vqa",), table, tokenizer, vocab)
    top = predict(model, examples, table)["vqa"].argmax(-1)
    assert {vocab.answers[int(i)] for i in top} <= set(answers)  # predictions speak the new vocabulary


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ve", "rec", "itm", "vqa"])
def test_finetune_from_a_folder_holding_only_that_tasks_file(
    splits: tuple[Path, Path], demo_dir: Path, tmp_path: Path, task: str
) -> None:
    train, val = splits
    folders = []
    for source in (train, val):
        alone = tmp_path / f"{source.name}-{task}"
        alone.mkdir()
        (alone / "images").symlink_to(source / "images")
        shutil.copyfile(source / f"{task}.jsonl", alone / f"{task}.jsonl")
        folders.append(alone)
    out = tmp_path / "ft"
    args = ["train", "finetune", "--init", str(demo_dir), "--tasks", task, "--train", str(folders[0]),
            "--val", str(folders[1]), "--out", str(out), *TINY]  # fmt: skip
    assert cli_main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["finetune"]["tasks"] == [task]
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["finetune"][f"val_{task}"] <= 1.0
    report = tmp_path / "eval.json"
    evaluate = ["evaluate", "--model", str(out), "--data", str(folders[1]), "--task", task, "--quiet"]
    assert cli_main([*evaluate, "--output", str(report)]) == 0
    assert json.loads(report.read_text())[task]["n"] == len(
        (folders[1] / f"{task}.jsonl").read_text().splitlines()
    )


@pytest.mark.slow
def test_finetune_on_a_share_of_the_training_images(
    splits: tuple[Path, Path], demo_dir: Path, tmp_path: Path
) -> None:
    train, val = splits
    runs = {}
    for share, extra in (("1", []), ("0.25", ["--ve-trains-itm"])):
        out = tmp_path / f"share-{share}"
        args = ["train", "finetune", "--init", str(demo_dir), "--tasks", "ve,itm", "--train", str(train),
                "--val", str(val), "--out", str(out), "--data-share", share, *extra, *TINY]  # fmt: skip
        assert cli_main(args) == 0
        runs[share] = json.loads((out / "metrics.json").read_text())["finetune"]
    assert runs["0.25"]["data_share"] == 0.25
    assert (runs["1"]["ve_trains_itm"], runs["0.25"]["ve_trains_itm"]) == (False, True)  # as asked
    records = sum(len((train / f"{t}.jsonl").read_text().splitlines()) for t in ("ve", "itm"))
    assert runs["1"]["train_examples"] == records  # every record of the 24 images
    assert 0 < runs["0.25"]["train_examples"] < records / 2  # those of 6 images
    no_ve = ["train", "finetune", "--init", str(demo_dir), "--tasks", "vqa,itm", "--train", str(train),
             "--out", str(tmp_path / "no-ve"), "--ve-trains-itm", *TINY]  # fmt: skip
    assert cli_main(no_ve) == 2 and not (tmp_path / "no-ve").exists()  # refused before any work


@pytest.mark.slow
def test_finetune_onto_another_detector(splits: tuple[Path, Path], demo_dir: Path, tmp_path: Path) -> None:
    """`--detector` moves a fine-tuned model onto another detector: the output directory holds that
    detector (weights and config), its metrics say where it came from, and the model answers."""
    from cmal.detector.config import DetectorConfig
    from cmal.detector.io import load_detector, save_detector
    from cmal.detector.model import Detector

    train, val = splits
    _, tags, attributes = load_detector(demo_dir)
    other = tmp_path / "other-detector"
    config = DetectorConfig(colour_channels=16, grey_backbone=True, score_threshold=0.0)
    save_detector(Detector(config), other, tags, attributes)  # a new architecture, random weights
    out = tmp_path / "ft"
    args = ["train", "finetune", "--init", str(demo_dir), "--detector", str(other), "--tasks", "vqa",
            "--train", str(train), "--val", str(val), "--out", str(out), *TINY]  # fmt: skip
    assert cli_main(args) == 0
    assert (out / "detector.safetensors").read_bytes() == (other / "detector.safetensors").read_bytes()
    assert DetectorConfig.load(out / "detector.json") == config
    assert (demo_dir / "detector.safetensors").read_bytes() != (out / "detector.safetensors").read_bytes()
    assert json.loads((out / "metrics.json").read_text())["finetune"]["detector"] == str(other)
    report = tmp_path / "eval.json"
    evaluate = ["evaluate", "--model", str(out), "--data", str(val), "--task", "vqa", "--quiet"]
    assert cli_main([*evaluate, "--output", str(report)]) == 0
    assert json.loads(report.read_text())["vqa"]["n"] == len((val / "vqa.jsonl").read_text().splitlines())
    missing = ["train", "finetune", "--init", str(demo_dir), "--detector", str(tmp_path / "none"),
               "--tasks", "vqa", "--train", str(train), "--out", str(tmp_path / "ft2"), *TINY]  # fmt: skip
    assert cli_main(missing) == 2  # a folder without a detector is refused with a message


@pytest.mark.slow
def test_finetune_with_another_dropout(splits: tuple[Path, Path], demo_dir: Path, tmp_path: Path) -> None:
    """`--dropout` sets the fine-tuned model's dropout (recorded in its config); the architecture and
    weights it starts from are the pre-trained model's, and a rate outside [0, 1] is refused."""
    from cmal.model.config import CMALConfig

    train, val = splits
    out = tmp_path / "other-dropout"
    args = ["train", "finetune", "--init", str(demo_dir), "--tasks", "vqa", "--train", str(train),
            "--val", str(val), "--out", str(out), "--dropout", "0.25", *TINY]  # fmt: skip
    assert cli_main(args) == 0
    before, after = CMALConfig.load(demo_dir / "cmal.json"), CMALConfig.load(out / "cmal.json")
    assert after.dropout == 0.25 and before.dropout != 0.25  # the option's, not the start's
    assert (after.hidden, after.layers, after.heads) == (before.hidden, before.layers, before.heads)
    too_high = ["train", "finetune", "--init", str(demo_dir), "--tasks", "vqa", "--train", str(train),
                "--out", str(tmp_path / "refused"), "--dropout", "1.5", *TINY]  # fmt: skip
    with pytest.raises(SystemExit) as refused:
        cli_main(too_high)
    assert refused.value.code == 2 and not (tmp_path / "refused").exists()
