"""The ``cmal`` command line: a thin shim over library functions.

Subcommands:
    cmal data shapes --out DIR --seed N --num-images N --split {train,val,test,compositional}
    cmal data check DIR
    cmal train detector --data DIR --out MODEL_DIR [--val DIR]
    cmal train pretrain --data DIR --out DIR [--detector MODEL_DIR]
    cmal train finetune --init DIR --tasks ve,rec,vqa,itm --train DIR --val DIR --out DIR
    cmal export --model MODEL_DIR --format {onnx,torchscript,all} [--out DIR] [--fp16] [--int8]
    cmal evaluate --model MODEL_DIR --data DIR --task {ve,rec,vqa,itm,detection,all} [--output FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cmal.train.trainer import TrainSettings


def _positive(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _data_shapes(args: argparse.Namespace) -> int:
    from cmal.data.generate import generate_split

    start = time.perf_counter()
    summary = generate_split(
        Path(args.out),
        seed=args.seed,
        num_images=args.num_images,
        split=args.split,
        image_size=args.image_size,
        progress=not args.quiet,
    )
    print(summary.table())
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from cmal.data.checker import check_dataset
    from cmal.data.formats import PARSERS, DataError, load

    folder = Path(args.dir)
    counts = {}
    try:
        for task in PARSERS:
            counts[task] = len(load(folder / f"{task}.jsonl", task))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    problems = list(check_dataset(folder))
    for p in problems[:50]:
        print(p)
    total = sum(counts.values()) - counts["objects"]
    print(f"checked {total} labels over {counts['objects']} images: {len(problems)} wrong")
    return 1 if problems else 0


def _train_detector(args: argparse.Namespace) -> int:
    from cmal.detector.train import DetectorTrainSettings, train_detector

    settings = DetectorTrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads
    )
    start = time.perf_counter()
    metrics = train_detector(
        Path(args.data),
        Path(args.out),
        Path(args.val) if args.val else None,
        settings,
        progress=not args.quiet,
    )
    print(_table({"detection": metrics}))
    print(f"saved the best checkpoint to {args.out} ({time.perf_counter() - start:.0f} s)")
    return 0


def _settings(args: argparse.Namespace) -> TrainSettings:
    from cmal.train.trainer import TrainSettings

    # options only one of pretrain / finetune has; absent ones keep TrainSettings' defaults
    specific = (
        "amc_weight",
        "swap_fraction",
        "false_swap",
        "geometry_mlm",
        "plain_pass",
        "init_blend",
        "skip_ambiguous",
    )
    return TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        max_steps=args.max_steps,
        resume=args.resume,
        **{k: getattr(args, k) for k in specific if hasattr(args, k)},
    )


def _train_pretrain(args: argparse.Namespace) -> int:
    from cmal.model.config import demo_config, paper_config
    from cmal.train.run import pretrain

    changes = {"layers": args.layers} if args.layers else {}
    config = (paper_config if args.preset == "paper" else demo_config)(objective=args.objective, **changes)
    best = pretrain(
        Path(args.data),
        Path(args.out),
        Path(args.detector or args.out),
        Path(args.val) if args.val else None,
        config,
        _settings(args),
        progress=not args.quiet,
    )
    print(_table({"pretrain": best}))
    return 0


def _train_finetune(args: argparse.Namespace) -> int:
    from cmal.train.run import finetune

    changes: dict[str, object] = {"cmap_mode": args.cmap_mode} if args.cmap_mode else {}
    if args.layers:
        changes["layers"] = args.layers
    best = finetune(
        Path(args.init),
        [t.strip() for t in args.tasks.split(",") if t.strip()],
        Path(args.train),
        Path(args.val) if args.val else None,
        Path(args.out),
        _settings(args),
        config_changes=changes,
        progress=not args.quiet,
    )
    print(_table({"finetune": best}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    results: dict[str, dict[str, float]] = {}
    tasks = ["ve", "rec", "vqa", "itm"] if args.task == "all" else [args.task]
    if args.task in ("detection", "all"):
        from cmal.detector.train import evaluate_detector_dir

        results["detection"] = evaluate_detector_dir(
            Path(args.model), Path(args.data), progress=not args.quiet
        )
        tasks = [t for t in tasks if t != "detection"]
    if tasks:
        from cmal.evaluate import evaluate_dir

        results.update(evaluate_dir(Path(args.model), Path(args.data), tasks, progress=not args.quiet))
    print(_table(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _export(args: argparse.Namespace) -> int:
    from export.api import ParityError, export_model

    model_dir = Path(args.model)
    try:
        manifest = export_model(
            model_dir, args.format, Path(args.out) if args.out else None, fp16=args.fp16, int8=args.int8
        )
    except ParityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else model_dir / "export"
    for name, info in manifest["files"].items():
        print(f"{name:<22}{info['bytes'] / 1e6:>8.2f} MB  {info['variant']}")
    for name, report in manifest["parity"].items():
        if "max_abs_diff" in report:
            worst = max(report["max_abs_diff"].values())
            print(f"parity {name:<14} max |diff| {worst:.2e}, mismatches {report['decision_mismatches']}")
        else:
            agree, n = report["decision_agreement"], report["margin_examples"]
            change = report["accuracy_change_points"]
            print(
                f"parity {name:<14} decisions agree {agree:.3f} on {n} of {report['examples']} examples "
                f"with a margin, accuracy {change} points"
            )
    print(f"wrote {out}/manifest.json in {manifest['export_seconds']} s")
    return 0


def _table(results: dict[str, dict[str, float]]) -> str:
    lines = [f"{'task':<11}{'metric':<20}{'value':>10}"]
    for task, metrics in results.items():
        for name, value in metrics.items():
            if isinstance(value, float):
                lines.append(f"{task:<11}{name:<20}{value:>10.4f}")
            elif isinstance(value, int):
                lines.append(f"{task:<11}{name:<20}{value:>10d}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmal", description="CMAL: train, evaluate and export vision-language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate and check datasets").add_subparsers(
        dest="data_command", required=True
    )
    shapes = data.add_parser("shapes", help="generate a split of the Shapes world")
    shapes.add_argument("--out", required=True, help="output folder")
    shapes.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    shapes.add_argument("--num-images", type=int, default=1000, help="number of images (default 1000)")
    shapes.add_argument(
        "--split",
        default="train",
        choices=("train", "val", "test", "compositional"),
        help="split (default train)",
    )
    shapes.add_argument("--image-size", type=int, default=128, help="image side in pixels (default 128)")
    shapes.add_argument("--quiet", action="store_true", help="no progress bar")
    shapes.set_defaults(func=_data_shapes)

    check = data.add_parser("check", help="validate a dataset folder and re-check every label independently")
    check.add_argument("dir", help="folder with the six JSONL files")
    check.set_defaults(func=_data_check)

    train = sub.add_parser("train", help="train models").add_subparsers(dest="train_command", required=True)
    det = train.add_parser("detector", help="train the region detector on objects.jsonl")
    det.add_argument("--data", required=True, help="training folder (objects.jsonl + images)")
    det.add_argument("--out", required=True, help="model directory to write")
    det.add_argument("--val", help="validation folder (default: hold out 10%% of --data)")
    det.add_argument("--epochs", type=int, default=14, help="epochs (default 14)")
    det.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    det.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    det.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    det.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    det.add_argument("--quiet", action="store_true", help="no progress bars")
    det.set_defaults(func=_train_detector)

    def loop_options(p: argparse.ArgumentParser, epochs: int) -> None:
        p.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
        p.add_argument("--batch-size", type=int, default=64, help="global batch size (default 64)")
        p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--threads", type=int, default=0, help="torch threads per process (default: torch's)")
        p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (smoke tests)")
        p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    pre = train.add_parser("pretrain", help="CMAL pre-training (MLM + ITM + AMC) on captions and ITM pairs")
    pre.add_argument("--data", required=True, help="training folder (captions.jsonl, itm.jsonl, images)")
    pre.add_argument("--out", required=True, help="model directory to write")
    pre.add_argument("--detector", help="model directory holding the detector (default: --out)")
    pre.add_argument("--val", help="validation folder (default: hold out 5%% of --data)")
    pre.add_argument(
        "--preset", choices=("demo", "paper"), default="demo", help="architecture (default demo)"
    )
    pre.add_argument(
        "--layers", type=_positive, help="unified encoder layers (default: the preset's; demo 2)"
    )
    pre.add_argument(
        "--objective", choices=("amc", "cmcl"), default="amc", help="alignment objective (default amc)"
    )
    pre.add_argument("--amc-weight", type=float, default=1.0, help="λ in MLM + ITM + λ·AMC (default 1)")
    pre.add_argument(
        "--swap-fraction", type=_fraction, default=0.5, help="share of anchor pairs swapped (default 0.5)"
    )
    pre.add_argument(
        "--false-swap", type=_fraction, default=0.2, help="share of swaps that are false (default 0.2)"
    )
    pre.add_argument(
        "--geometry-mlm",
        type=_fraction,
        default=0.15,
        help="MLM masking probability of size and position words such as 'tiny' or 'left' "
        "(other words: 0.15; default 0.15)",
    )
    pre.add_argument(
        "--plain-pass",
        action="store_true",
        help="MLM and ITM on a second, unswapped pass (AMC keeps the swapped one)",
    )
    loop_options(pre, 10)
    pre.set_defaults(func=_train_pretrain)

    fin = train.add_parser("finetune", help="multi-task fine-tuning (ve, rec, vqa, itm)")
    fin.add_argument(
        "--init", required=True, help="pre-trained model directory (or one with only a detector)"
    )
    fin.add_argument("--tasks", default="ve,rec,vqa,itm", help="comma-separated subset of ve,rec,vqa,itm")
    fin.add_argument("--train", required=True, help="training folder")
    fin.add_argument("--val", help="validation folder (default: hold out 5%% of --train)")
    fin.add_argument("--out", required=True, help="model directory to write")
    fin.add_argument(
        "--cmap-mode", choices=("swap", "mix", "off"), help="CMAP mode (default: the init model's)"
    )
    fin.add_argument(
        "--swap-ambiguous",
        dest="skip_ambiguous",
        action="store_false",
        help="swap a word that matches several regions (two circles) with the first of them, as "
        "models fine-tuned before this option did (default: leave such words unswapped)",
    )
    fin.add_argument(
        "--layers",
        type=_positive,
        help="unified encoder layers when --init holds no CMAL model (default: the demo preset's); "
        "a pre-trained model keeps its own",
    )
    fin.add_argument(
        "--init-blend",
        type=_fraction,
        default=1.0,
        help="start from λ·pre-trained + (1-λ)·fresh weights (default 1: the pre-trained weights)",
    )
    loop_options(fin, 10)
    fin.set_defaults(func=_train_finetune)

    exp = sub.add_parser(
        "export", help="export a model directory to ONNX / TorchScript graphs, with parity checks"
    )
    exp.add_argument("--model", required=True, help="model directory")
    exp.add_argument("--format", default="all", choices=("onnx", "torchscript", "all"), help="default all")
    exp.add_argument("--out", help="output folder (default MODEL/export)")
    exp.add_argument("--fp16", action="store_true", help="also write fp16 ONNX graphs (for GPUs)")
    exp.add_argument(
        "--int8", action="store_true", help="also write an int8 dynamically quantised fusion graph (CPU)"
    )
    exp.set_defaults(func=_export)

    ev = sub.add_parser("evaluate", help="evaluate a model directory on a dataset folder")
    ev.add_argument("--model", required=True, help="model directory")
    ev.add_argument("--data", required=True, help="dataset folder in the canonical formats")
    ev.add_argument(
        "--task", default="all", choices=("detection", "all"), help="task to evaluate (default all)"
    )
    ev.add_argument("--output", help="write the results as JSON here")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
