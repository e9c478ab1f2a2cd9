"""Assemble a served model directory from a demo run: weights, vocabularies, metrics, card.

Usage: python -m cmal.card_build --run runs/demo --data data/demo --out models/shapes-demo --seconds N
    [--notes FILE] [--ablation DIR] [--stages "data detector ..."]
Reads RUN/final (the fine-tuned model), RUN/detector, RUN/test.json, RUN/compositional.json and,
if present, RUN/kinds.json (accuracy by question kind, from scripts/errors_by_kind.py) and
RUN/ablation.json and RUN/ablation.png (`cmal.ablation`: AMC vs CMCL vs no pre-training; `--ablation
DIR` reads them from another run's folder, when the shipped model continued an earlier run), and
RUN/stage-seconds/<stage> (each stage's wall time, written by scripts/demo_model.sh) and, if present,
RUN/machine.json (the CPU it ran on and torch's matrix-product rate there, `cmal.bench.machine`);
DATA/{train,val,test,compositional}/dataset.json say which seeds and how many images, and
DATA/train-<seed>/dataset.json those of the fresh-image fine-tuning stages, when the run had any.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cmal.ablation import PLOT as ABLATION_PLOT
from cmal.ablation import TABLE as ABLATION_TABLE
from cmal.ablation import card_section
from cmal.card import TASK_NAMES, write_card
from cmal.model_dir import DETECTOR_CONFIG, METRICS, MODEL_FILES
from cmal.tasks import TASKS


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


SPLITS = ("train", "val", "test", "compositional")
TARGETS = {t.id: t.demo_target for t in TASKS}  # the demo model's i.i.d. test targets


def _split(data: Path, name: str) -> dict[str, int]:
    """Seed and image count of one generated split (from its dataset.json)."""
    path = data / name / "dataset.json"
    info = _json(path)
    if not info:
        raise FileNotFoundError(f"{path} is missing: pass the demo run's --data folder")
    return {"seed": int(info["seed"]), "images": int(info["num_images"])}


def _fresh_splits(data: Path) -> list[dict[str, int]]:
    """Seed and image count of each fresh-image training split (DATA/train-<seed>), by seed."""
    folders = [f for f in data.glob("train-*") if f.name.removeprefix("train-").isdigit()]
    return sorted((_split(data, f.name) for f in folders), key=lambda split: split["seed"])


def _fresh_text(fresh: list[dict[str, int]]) -> str:
    """The card's words for the fresh-image stages' seeds, or nothing when there were none."""
    if not fresh:
        return ""
    seeds = ", ".join(str(split["seed"]) for split in fresh)
    counts = {split["images"] for split in fresh}
    images = f"{counts.pop():,} images each" if len(counts) == 1 else "images"
    return f", then {seeds} (fresh images for the last fine-tuning stages, {images}),"


def _stage_seconds(run: Path, order: Sequence[str] = ()) -> dict[str, int]:
    """Each pipeline stage's wall time in seconds, as ``scripts/demo_model.sh`` recorded it: the
    stages named in ``order`` first, in that order, then any others by name."""
    folder = run / "stage-seconds"
    if not folder.is_dir():
        return {}
    files = [f for f in folder.iterdir() if f.is_file()]
    rank = {name: i for i, name in enumerate(order)}
    files.sort(key=lambda f: (rank.get(f.name, len(rank)), f.name))
    return {f.name: int(f.read_text().strip()) for f in files}


def _duration(seconds: int | None, stages: dict[str, int], machine: dict[str, Any] | None = None) -> str:
    """The card's sentence on how long the last run took, stage by stage when known, and on what
    machine when recorded; without a run time the model did not come out of one run, and the card
    says so."""
    if not seconds:
        return " This model is not the output of one such run: the notes below say how it was built."
    text = f" Its last run took {seconds / 60:.0f} minutes on the project's 2-core CPU machine"
    if stages:
        text += " (" + ", ".join(f"{name} {s:,} s" for name, s in stages.items()) + ")"
    text += "."
    if machine:
        text += (
            f" That machine: {machine['cpu']}, {machine['cores']} cores; torch multiplied fp32 matrices at"
            f" {machine['torch_matmul_gflop_per_s']:.0f} GFLOP/s on {machine['torch_threads']} threads there"
            " (the project's machines differ in speed: this rate says how fast this one was)."
        )
    return text


def _accuracy(results: dict[str, Any], task: str) -> float:
    return float(results.get(task, {}).get("accuracy", 0.0))


def _status(test: dict[str, Any], kinds: dict[str, dict[str, dict[str, float]]] | None) -> list[str]:
    """The card's target check and, when measured, the accuracy by kind of example."""
    short = [t for t, goal in TARGETS.items() if _accuracy(test, t) < goal]
    goals = ", ".join(f"{TASK_NAMES[t]} ≥ {g:.2f}" for t, g in TARGETS.items())
    lines = ["## Status", ""]
    if short:
        missed = ", ".join(TASK_NAMES[t] for t in short)
        lines.append(f"Below its targets ({goals} on the i.i.d. test split) on: {missed}.")
    else:
        lines.append(f"Meets its targets ({goals} on the i.i.d. test split).")
    lines.append("")
    if kinds:
        lines += [
            "Accuracy by kind of example on the test split"
            " (`scripts/errors_by_kind.py`; ITM `-pos`/`-neg` = matching / non-matching texts):",
            "",
            "| task | kind | accuracy | n |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {task} | {kind} | {r['accuracy']:.2f} | {r['n']} |"
            for task, by in kinds.items()
            for kind, r in by.items()
        ]
        lines.append("")
    return lines


def _declining(calibration: dict[str, Any] | None) -> list[str]:
    """How the model decides that an expression names nothing, when it was calibrated."""
    if not calibration:
        return ["Grounding never declines: the model has no decline threshold (`cmal calibrate`).", ""]
    return [
        "Grounding declines (answers no box) when the image-text matching logit of the expression is"
        f" below {calibration['threshold']:.2f}, chosen on the validation split's"
        f" {calibration['absent']:,} expressions that name nothing and {calibration['present']:,} that"
        f" name one object: there it declined {calibration['declined_absent']:.3f} of the former and"
        f" kept {calibration['kept_present']:.3f} of the latter (test: `rec` kind `none` above).",
        "",
    ]


JOINT_DETECTOR_LIMIT = [  # a detector without its own colour path (`cmal train detector --colour-channels`)
    "- The detector partly binds colour to shape: on colour–shape pairs never seen in training its tag",
    "  and attribute accuracy drop (see `metrics.json` → `detection.compositional`), and every task",
    "  built on those regions drops with it.",
]


def build(
    run: Path,
    data: Path,
    out: Path,
    seconds: int | None,
    extra: str = "",
    ablation_run: Path | None = None,
    stage_order: Sequence[str] = (),
) -> Path:
    """Assemble the served model directory ``out`` from a demo run; returns ``out``.

    Copies the fine-tuned model files from ``run/final``, writes ``metrics.json`` and renders the card;
    ``seconds`` (the demo run's duration) is recorded and quoted, ``extra`` is markdown appended to the card;
    the pre-training ablation is read from ``ablation_run`` (default: ``run``); the stages' times are
    listed in ``stage_order`` (the pipeline's order), any others after them.
    """
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copyfile(run / "final" / name, out / name)
    final = _json(run / "final" / METRICS) or {}
    detector = _json(run / "detector" / METRICS) or {}
    test = _json(run / "test.json") or {}
    comp = _json(run / "compositional.json") or {}
    metrics: dict[str, Any] = {
        "test": {k: v for k, v in test.items() if k != "detection"},
        "compositional": {k: v for k, v in comp.items() if k != "detection"},
        "detection": {
            "test": test.get("detection"),
            "compositional": comp.get("detection"),
            "val": detector.get("detection"),
        },
        "pretrain": final.get("pretrain") or (_json(run / "pretrain" / METRICS) or {}).get("pretrain"),
        "finetune": final.get("finetune"),
        "calibration": final.get("calibration"),
        "data": {name: _split(data, name) for name in SPLITS},
    }
    fresh = _fresh_splits(data)
    if fresh:
        metrics["data"]["fresh"] = fresh
    ablation_run = ablation_run or run
    ablation = _json(ablation_run / ABLATION_TABLE)
    if ablation:
        metrics["ablation"] = ablation
        shutil.copyfile(ablation_run / ABLATION_PLOT, out / ABLATION_PLOT)
    if seconds is not None:
        metrics["demo_model_seconds"] = seconds
    stages = _stage_seconds(run, stage_order)
    if stages:
        metrics["demo_model_stage_seconds"] = stages
    machine = _json(run / "machine.json")
    if machine:
        metrics["demo_model_machine"] = machine
    (out / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    d = metrics["data"]
    notes = _status(metrics["test"], _json(run / "kinds.json"))
    notes += _declining(metrics["calibration"])
    notes += [
        "## Data and training",
        "",
        "Everything is generated and trained here; nothing is downloaded. Training used Shapes seeds"
        f" {d['train']['seed']}",
        f"(train, {d['train']['images']:,} images){_fresh_text(d.get('fresh', []))} and {d['val']['seed']}"
        " (validation,"
        f" {d['val']['images']:,} images); the results above are on seeds {d['test']['seed']}",
        f"(i.i.d. test, {d['test']['images']:,} images) and {d['compositional']['seed']} (compositional:"
        " colour–shape pairs never seen in",
        f"training, {d['compositional']['images']:,} images), which no training step saw.",
        "",
        "```bash",
        "make demo-model   # data, detector, pre-training, fine-tuning, evaluation, this card",
        "```",
        "",
        "runs `scripts/demo_model.sh` (the commands, seeds and epochs are there)."
        + _duration(seconds, stages, machine),
        "",
    ]
    if ablation:
        notes += card_section(ablation)
    if extra:
        notes += [extra.strip(), ""]
    notes += [
        "## Limits",
        "",
        "- Trained only on the synthetic Shapes world (5 shapes, 6 colours, 2 sizes, 4 relations, templated",
        "  English); it knows nothing about photographs or free-form language.",
        *(JOINT_DETECTOR_LIMIT if not _json(out / DETECTOR_CONFIG).get("colour_channels") else []),
        "- Relations use a 10%-of-the-image margin; statements inside the margin are never made by the",
        "  generator, so the model's answers there are unconstrained.",
    ]
    write_card(out, "\n".join(notes))
    return out


def main() -> None:
    """Command line entry point; the usage is in the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True, help="the run's data folder (train/val/test/compositional)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--notes", help="a markdown file appended to the card (measurements, caveats)")
    parser.add_argument(
        "--ablation", help="the run folder holding ablation.json and ablation.png (default: --run)"
    )
    parser.add_argument("--stages", default="", help="the pipeline's stage names in order, space-separated")
    args = parser.parse_args()
    extra = Path(args.notes).read_text() if args.notes else ""
    ablation_run = Path(args.ablation) if args.ablation else None
    out = build(
        Path(args.run),
        Path(args.data),
        Path(args.out),
        args.seconds,
        extra,
        ablation_run,
        args.stages.split(),
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
