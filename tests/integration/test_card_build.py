"""The demo model's directory and card are assembled from a run: weights, seeds, metrics, ablation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cmal import ablation
from cmal.card_build import MODEL_FILES, build
from cmal.model_dir import DETECTOR_CONFIG


def _metrics(ve: float, vqa: float) -> dict[str, dict[str, float]]:
    return {
        "ve": {"accuracy": ve, "n": 10},
        "rec": {"accuracy": 0.5, "n": 10},
        "vqa": {"accuracy": vqa, "n": 10},
        "itm": {"accuracy": 0.75, "auc": 0.8, "n": 10},
    }


@pytest.fixture
def run_and_data(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    run, data = tmp_path / "run", tmp_path / "data"
    (run / "final").mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copyfile(tiny_model_dir / name, run / "final" / name)
    calibration = {"threshold": -2.5, "declined_absent": 0.9, "kept_present": 0.95}
    calibration |= {"absent": 20, "present": 80}
    final_metrics = {"finetune": {"epoch": 3, "score": 0.6}, "calibration": calibration}
    (run / "final" / "metrics.json").write_text(json.dumps(final_metrics))
    detection = {"recall": 0.99, "precision": 0.98, "tag_accuracy": 0.93, "attribute_accuracy": 0.91}
    (run / "test.json").write_text(
        json.dumps({**_metrics(0.91, 0.8), "detection": {**detection, "recall": 1.0}})
    )
    (run / "compositional.json").write_text(json.dumps({**_metrics(0.85, 0.7), "detection": detection}))
    kinds = {"vqa": {"relation": {"accuracy": 0.5, "n": 12}, "shape": {"accuracy": 1.0, "n": 9}}}
    (run / "kinds.json").write_text(json.dumps(kinds))
    for arm, ve, vqa in (("amc", 0.9, 0.8), ("cmcl", 0.85, 0.6), ("none", 0.88, 0.85)):
        for share in ("0.1", "1"):
            (run / "ablation" / f"{arm}-{share}").mkdir(parents=True)
            for split in ("test", "compositional"):
                result = json.dumps(_metrics(ve, vqa if share == "0.1" else vqa + 0.1))
                (run / "ablation" / f"{arm}-{share}" / f"{split}.json").write_text(result)
    ablation.main_for(run)
    (run / "stage-seconds").mkdir()
    for stage, seconds in (("data", 70), ("detector", 900)):
        (run / "stage-seconds" / stage).write_text(f"{seconds}\n")
    splits = (("train", 1000, 40), ("val", 1001, 8), ("test", 3000, 20), ("compositional", 3001, 10))
    # fresh-image stages (train-<seed>, listed by seed) and the first stage's own copy of train
    splits += (("train-1003", 1003, 6), ("train-1002", 1002, 6), ("train-first", 1000, 40))
    for name, seed, n in splits:
        (data / name).mkdir(parents=True)
        (data / name / "dataset.json").write_text(json.dumps({"seed": seed, "num_images": n}))
    return run, data


def test_build_writes_weights_metrics_and_card(tmp_path: Path, run_and_data: tuple[Path, Path]) -> None:
    run, data = run_and_data
    out = build(run, data, tmp_path / "model", seconds=3720)
    for name in MODEL_FILES:
        assert (out / name).read_bytes() == (run / "final" / name).read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["train"] == {"seed": 1000, "images": 40}
    assert metrics["data"]["compositional"] == {"seed": 3001, "images": 10}
    assert metrics["test"]["ve"]["accuracy"] == 0.91
    assert metrics["ablation"]["results"]["cmcl"]["0.1"]["test"]["vqa"] == 0.6
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert metrics["demo_model_seconds"] == 3720
    assert metrics["calibration"]["threshold"] == -2.5
    card = (out / "README.md").read_text()
    took = "Its last run took 62 minutes on the project's 2-core CPU machine (data 70 s, detector 900 s)."
    assert took in card
    assert metrics["demo_model_stage_seconds"] == {"data": 70, "detector": 900}
    # the compositional gap in points, per task: ve 0.91 - 0.85, itm 0.75 - 0.75
    assert "| task | test | compositional | gap, points |" in card
    assert "| visual entailment | 0.910 | 0.850 | 6.0 |" in card
    assert "| image-text matching | 0.750 (AUC 0.800) | 0.750 (AUC 0.800) | 0.0 |" in card
    assert "compositional split): recall 0.990, tag accuracy 0.930, attribute accuracy 0.910." in card
    assert "seeds 1000" in card and "(train, 40 images)" in card and "3001 (compositional" in card
    assert metrics["data"]["fresh"] == [{"seed": 1002, "images": 6}, {"seed": 1003, "images": 6}]
    assert "then 1002, 1003 (fresh images for the last fine-tuning stages, 6 images each), and 1001" in card
    # the ablation tables: one column per starting point and share, the smallest share first
    header = next(line for line in card.splitlines() if line.startswith("| task | AMC pre-training, 10%"))
    assert header.endswith("| no pre-training, 100% |")
    assert "| visual entailment | 0.900 | 0.850 | 0.880 | 0.900 | 0.850 | 0.880 |" in card
    assert "![accuracy against the share of fine-tuning data](ablation.png)" in card
    # the target check names exactly the tasks below target (ve 0.91 and itm 0.75 vs 0.90, ...)
    status = next(line for line in card.splitlines() if line.startswith("Below its targets"))
    assert status.endswith("on: grounding (IoU ≥ 0.5), VQA, image-text matching.")
    assert "| vqa | relation | 0.50 | 12 |" in card
    assert "below -2.50, chosen on the validation split's 20 expressions that name nothing" in card
    assert "declined 0.900 of the former and kept 0.950 of the latter" in card
    # at 10%: ve 0.9 beats 0.85 and 0.88; vqa 0.8 beats cmcl's 0.6 but not none's 0.85; rec and itm tie
    assert (
        "At 10% of the data, AMC pre-training beats both alternatives on 1 of 4 tasks on the i.i.d."
        " split (visual entailment): the paper's claim (at least 3 of 4) does not hold here." in card
    )


@pytest.mark.parametrize("colour_channels", [0, 16])
def test_the_colour_binding_limit_is_stated_only_for_a_joint_detector(
    tmp_path: Path, run_and_data: tuple[Path, Path], colour_channels: int
) -> None:
    run, data = run_and_data
    config = run / "final" / DETECTOR_CONFIG
    config.write_text(json.dumps({**json.loads(config.read_text()), "colour_channels": colour_channels}))
    card = (build(run, data, tmp_path / "model", seconds=None) / "README.md").read_text()
    joint = colour_channels == 0  # no colour path of its own: colour and shape read by one CNN
    assert ("The detector partly binds colour to shape" in card) == joint


def test_build_says_when_targets_are_met(tmp_path: Path, run_and_data: tuple[Path, Path]) -> None:
    run, data = run_and_data
    good = {t: {"accuracy": 0.95, "n": 10} for t in ("ve", "rec", "vqa", "itm")}
    (run / "test.json").write_text(json.dumps(good))
    card = (build(run, data, tmp_path / "model", seconds=None) / "README.md").read_text()
    assert "Meets its targets" in card and "Below its targets" not in card
    assert "This model is not the output of one such run" in card  # no run time: not one run


def test_build_without_fresh_stages_names_only_train_and_val(
    tmp_path: Path, run_and_data: tuple[Path, Path]
) -> None:
    run, data = run_and_data
    for seed in (1002, 1003):
        shutil.rmtree(data / f"train-{seed}")
    out = build(run, data, tmp_path / "model", seconds=None)
    assert "fresh" not in json.loads((out / "metrics.json").read_text())["data"]
    assert "(train, 40 images) and 1001 (validation" in (out / "README.md").read_text()


def test_build_names_a_missing_data_folder(tmp_path: Path, run_and_data: tuple[Path, Path]) -> None:
    run, _ = run_and_data
    with pytest.raises(FileNotFoundError, match=r"dataset\.json is missing"):
        build(run, tmp_path / "nowhere", tmp_path / "model", seconds=None)


def test_build_reads_the_ablation_of_another_run(tmp_path: Path, run_and_data: tuple[Path, Path]) -> None:
    """A model that continued an earlier run carries that run's ablation (`--ablation DIR`)."""
    run, data = run_and_data
    other = tmp_path / "other"
    other.mkdir()
    for name in (ablation.TABLE, ablation.PLOT):
        shutil.move(run / name, other / name)
    alone = json.loads((build(run, data, tmp_path / "alone", seconds=None) / "metrics.json").read_text())
    assert "ablation" not in alone
    out = build(run, data, tmp_path / "model", seconds=None, ablation_run=other)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ablation"] == json.loads((other / ablation.TABLE).read_text())
    assert (out / ablation.PLOT).read_bytes() == (other / ablation.PLOT).read_bytes()
    card = (out / "README.md").read_text()
    assert "![accuracy against the share of fine-tuning data](ablation.png)" in card


def test_build_lists_stage_times_in_the_pipelines_order(
    tmp_path: Path, run_and_data: tuple[Path, Path]
) -> None:
    run, data = run_and_data
    for stage, seconds in (("pre-training", 600), ("evaluation", 40), ("extra", 5)):
        (run / "stage-seconds" / stage).write_text(f"{seconds}\n")
    order = ["data", "detector", "pre-training", "fine-tuning", "evaluation"]
    out = build(run, data, tmp_path / "model", seconds=1615, stage_order=order)
    card = (out / "README.md").read_text()
    assert "(data 70 s, detector 900 s, pre-training 600 s, evaluation 40 s, extra 5 s)." in card
    stages = json.loads((out / "metrics.json").read_text())["demo_model_stage_seconds"]
    assert stages == {"data": 70, "detector": 900, "pre-training": 600, "evaluation": 40, "extra": 5}


def test_build_records_the_machine_the_run_ran_on(tmp_path: Path, run_and_data: tuple[Path, Path]) -> None:
    run, data = run_and_data
    machine = {"cpu": "AMD EPYC", "cores": 2, "torch_threads": 2, "torch_matmul_gflop_per_s": 61.4}
    (run / "machine.json").write_text(json.dumps(machine))
    out = build(run, data, tmp_path / "model", seconds=3720)
    assert json.loads((out / "metrics.json").read_text())["demo_model_machine"] == machine
    card = (out / "README.md").read_text()
    assert (
        "(data 70 s, detector 900 s). That machine: AMD EPYC, 2 cores; torch multiplied fp32 matrices at 61"
        " GFLOP/s on 2 threads there" in card
    )
