"""The command handlers of ``cmal`` (`cmal.cli` parses the arguments): each takes the parsed
arguments, calls the library, prints what a person wants to see, and returns the exit status.
Heavy modules are imported inside each handler, so ``cmal --help`` stays fast."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cmal.train.trainer import TrainSettings


def data_shapes(args: argparse.Namespace) -> int:
    """`cmal data shapes`: write a Shapes split and print what it holds."""
    from cmal.data.generate import generate_split

    _make_room(Path(args.out), args.overwrite)
    start = time.perf_counter()
    summary = generate_split(
        Path(args.out),
        seed=args.seed,
        num_images=args.num_images,
        split=args.split,
        image_size=args.image_size,
        progress=not args.quiet,
        domain=args.domain,
        extra_relations=args.extra_relations,
        extra_statements=args.extra_statements,
    )
    print(summary.table())
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _make_room(out: Path, overwrite: bool) -> None:
    """Refuse to write a split into a non-empty folder, unless ``overwrite``: then clear it, but
    only when it holds a split (its ``dataset.json``), never an arbitrary folder."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"{out} is not empty: choose another folder, or pass --overwrite to replace it")
    if not (out / "dataset.json").is_file():
        raise ValueError(
            f"{out} holds no generated split (no dataset.json): not clearing it; remove it yourself"
        )
    import shutil

    shutil.rmtree(out)


def data_check(args: argparse.Namespace) -> int:
    """`cmal data check`: load every file of a folder and re-derive every label (1: some wrong)."""
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


def train_detector(args: argparse.Namespace) -> int:
    """`cmal train detector`: train the region detector into a model directory."""
    from cmal.detector.config import DetectorConfig
    from cmal.detector.train import DetectorTrainSettings, train_detector

    if args.drop_old_classes and not args.init:
        raise ValueError("--drop-old-classes needs --init (the detector whose classes to drop)")
    if args.init and (args.colour_channels or args.grey_backbone or args.contrast_backbone):
        raise ValueError(
            "--init keeps its detector's architecture: drop --colour-channels / --grey-backbone /"
            " --contrast-backbone"
        )
    settings = DetectorTrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads
    )
    start = time.perf_counter()
    metrics = train_detector(
        Path(args.data),
        Path(args.out),
        Path(args.val) if args.val else None,
        settings,
        DetectorConfig(
            colour_channels=args.colour_channels,
            grey_backbone=args.grey_backbone,
            contrast_backbone=args.contrast_backbone,
        ),
        progress=not args.quiet,
        init=Path(args.init) if args.init else None,
        keep_old_classes=not args.drop_old_classes,
        boxes_from=args.boxes_from,
        image_size=args.image_size,
        found_classes=args.found_classes,
    )
    print(table({"detection": metrics}))
    print(f"saved the best checkpoint to {args.out} ({time.perf_counter() - start:.0f} s)")
    return 0


def train_settings(args: argparse.Namespace) -> TrainSettings:
    """The `TrainSettings` the command line asks for (options a command lacks keep their defaults)."""
    from cmal.data.vocab import GENERIC_NOUNS
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
        "strict_attribute_anchors",
        "group_anchors",
        "adapt_detector",
        "detector_lr_scale",
        "data_share",
        "ve_trains_itm",
        "length_groups",
        "new_words",
    )
    return TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        max_steps=args.max_steps,
        resume=args.resume,
        generic_nouns=GENERIC_NOUNS if getattr(args, "generic_noun_anchors", False) else (),
        **{k: getattr(args, k) for k in specific if hasattr(args, k)},
    )


def train_pretrain(args: argparse.Namespace) -> int:
    """`cmal train pretrain`: pre-train CMAL on captions and ITM pairs."""
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
        train_settings(args),
        progress=not args.quiet,
    )
    print(table({"pretrain": best}))
    return 0


def train_finetune(args: argparse.Namespace) -> int:
    """`cmal train finetune`: fine-tune a task subset from a pre-trained or detector-only folder."""
    from cmal.train.run import finetune

    changes: dict[str, object] = {"cmap_mode": args.cmap_mode} if args.cmap_mode else {}
    if args.slot_geometry:
        changes["slot_geometry"] = True
    if args.anchor_markers:
        changes["anchor_markers"] = True
    if args.layers:
        changes["layers"] = args.layers
    if args.dropout is not None:
        changes["dropout"] = args.dropout
    best = finetune(
        Path(args.init),
        [t.strip() for t in args.tasks.split(",") if t.strip()],
        Path(args.train),
        Path(args.val) if args.val else None,
        Path(args.out),
        train_settings(args),
        config_changes=changes,
        progress=not args.quiet,
        detector_dir=Path(args.detector) if args.detector else None,
    )
    print(table({"finetune": best}))
    return 0


def serve(args: argparse.Namespace) -> int:
    """`cmal serve`: the inference service, as ``python -m service`` (CMAL_* settings apply)."""
    from service.__main__ import run_service

    overrides = {
        "model_dir": args.model,
        "graphs_dir": args.graphs,
        "backend": args.backend,
        "variant": args.variant,
    }
    return run_service(
        {k: v for k, v in overrides.items() if v is not None}, args.host, args.port, args.log_level
    )


def calibrate(args: argparse.Namespace) -> int:
    """`cmal calibrate`: choose and store the grounding decline threshold of a model directory."""
    from cmal.calibrate import calibrate_dir

    figures = calibrate_dir(Path(args.model), Path(args.data), progress=not args.quiet)
    print(table({"decline": {k: v for k, v in figures.items() if k != "data"}}))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """`cmal evaluate`: one task, detection, or every task the folder has a file for."""
    import json

    from cmal.tasks import TASKS

    data = Path(args.data)
    results: dict[str, dict[str, float]] = {}
    if args.task == "all":  # whatever the folder has files for
        tasks = [t.id for t in TASKS if (data / t.data_file).is_file()]
        detection = (data / "objects.jsonl").is_file()
        if not tasks and not detection:
            wanted = ", ".join([t.data_file for t in TASKS] + ["objects.jsonl"])
            raise FileNotFoundError(f"{data} has none of {wanted}")
    else:
        tasks = [] if args.task == "detection" else [args.task]
        detection = args.task == "detection"
    if detection:
        from cmal.detector.train import evaluate_detector_dir

        results["detection"] = evaluate_detector_dir(Path(args.model), data, progress=not args.quiet)
    if tasks:
        from cmal.evaluate import evaluate_dir

        results.update(evaluate_dir(Path(args.model), data, tasks, progress=not args.quiet))
    print(table(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def export(args: argparse.Namespace) -> int:
    """`cmal export`: graphs, variants, parity checks and the manifest (1 when parity fails)."""
    from cmal.model_dir import EXPORT_DIR
    from export.api import ParityError, export_model

    model_dir = Path(args.model)
    fmt = "onnx" if args.format == "triton" else args.format  # Triton serves the ONNX graphs
    try:
        manifest = export_model(
            model_dir, fmt, Path(args.out) if args.out else None, fp16=args.fp16, int8=args.int8
        )
    except ParityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else model_dir / EXPORT_DIR
    if args.format == "triton":
        from export.triton import write_python_repository, write_repository

        print(f"wrote the Triton model repository {write_repository(out, manifest)}")
        print(f"wrote its CPU test variant (Python backend) {write_python_repository(out, manifest)}")
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


def bench(args: argparse.Namespace) -> int:
    """`cmal bench`: engine and service throughput and latency; writes bench.json and bench.png."""
    from cmal.bench.report import summary
    from cmal.bench.suite import BenchSettings, run_bench

    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",") if v.strip()]

    default_backends = "onnx,torch" if args.preset == "paper" else "onnx,onnx-int8,torchscript,torch"
    name = Path(args.model).name if args.model else args.preset
    settings = BenchSettings(
        out=Path(args.out or f"runs/bench/{name}"),
        preset=args.preset,
        model=Path(args.model) if args.model else None,
        graphs=Path(args.graphs) if args.graphs else None,
        backends=[b.strip() for b in (args.backends or default_backends).split(",") if b.strip()],
        batch_sizes=ints(args.batch_sizes),
        concurrency=ints(args.concurrency),
        load_fractions=[float(v) for v in args.load.split(",") if v.strip()],
        seconds=args.seconds,
        images=args.images,
        threads=args.threads,
        service_env={"CMAL_PROCESSES": str(args.processes)},
    )
    report = run_bench(settings, quiet=args.quiet)
    print(summary(report))
    print(f"wrote {settings.out}/bench.json and bench.png")
    return 0


def table(results: dict[str, dict[str, float]]) -> str:
    """Results as an aligned text table: one row per task, one column per metric."""
    lines = [f"{'task':<11}{'metric':<20}{'value':>10}"]
    for task, metrics in results.items():
        for name, value in metrics.items():
            if isinstance(value, float):
                lines.append(f"{task:<11}{name:<20}{value:>10.4f}")
            elif isinstance(value, int):
                lines.append(f"{task:<11}{name:<20}{value:>10d}")
    return "\n".join(lines)
