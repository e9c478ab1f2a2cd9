"""The ``cmal`` command line: a thin shim over library functions.

Subcommands:
    cmal data shapes --out DIR --seed N --num-images N --split {train,val,test,compositional}
                     [--domain {shapes,shifted}] [--extra-relations N] [--extra-statements KIND=N,...]
    cmal data check DIR
    cmal train detector --data DIR --out MODEL_DIR [--val DIR] [--init MODEL_DIR [--drop-old-classes]
                        [--boxes-from foreground]]
    cmal train pretrain --data DIR --out DIR [--detector MODEL_DIR]
    cmal train finetune --init DIR --tasks ve,rec,vqa,itm --train DIR --val DIR --out DIR [--adapt-detector]
                        [--detector MODEL_DIR]
    cmal export --model MODEL_DIR --format {onnx,torchscript,all} [--out DIR] [--fp16] [--int8]
    cmal evaluate --model MODEL_DIR --data DIR --task {ve,rec,vqa,itm,detection,all} [--output FILE]
    cmal serve [--model MODEL_DIR] [--backend B] [--variant V] [--host H] [--port P]
    cmal --version
"""

from __future__ import annotations

import argparse
import logging
import sys

from cmal import commands
from cmal.cli_types import fraction, kind_counts, positive


def _version() -> str:
    """The installed package's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cmal-serving")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``cmal`` argument parser: the ``data``, ``train``, ``export`` and ``evaluate`` commands."""
    from cmal.tasks import TASK_IDS

    parser = argparse.ArgumentParser(
        prog="cmal", description="CMAL: train, evaluate and export vision-language models."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    shapes.add_argument(
        "--domain",
        default="shapes",
        choices=("shapes", "shifted"),
        help="shapes (default): the demo model's world; shifted: a world its detector never saw (star, "
        "hexagon, pentagon, ring; pink, cyan, brown, black, lime; bluish blotchy background; 160 px; "
        "other wording)",
    )
    shapes.add_argument(
        "--image-size", type=int, help="image side in pixels (default: the domain's, 128 or 160)"
    )
    shapes.add_argument(
        "--extra-relations",
        type=int,
        default=0,
        help="per image, up to N more two-object relation questions (vqa.jsonl) and as many relation "
        "statements (itm.jsonl), after everything else: the rest of the split is unchanged (default 0)",
    )
    shapes.add_argument(
        "--extra-statements",
        type=kind_counts,
        default={},
        metavar="KIND=N,...",
        help="per image, up to N more ITM statements of each KIND (listing, relation, count, exists, "
        "absent, attribute), alternately matching and not, after everything else, e.g. listing=2,count=2",
    )
    shapes.add_argument("--quiet", action="store_true", help="no progress bar")
    shapes.add_argument(
        "--overwrite", action="store_true", help="replace the split already in --out (default: refuse)"
    )
    shapes.set_defaults(func=commands.data_shapes)

    check = data.add_parser("check", help="validate a dataset folder and re-check every label independently")
    check.add_argument("dir", help="folder with the six JSONL files")
    check.set_defaults(func=commands.data_check)

    train = sub.add_parser("train", help="train models").add_subparsers(dest="train_command", required=True)
    det = train.add_parser("detector", help="train the region detector on objects.jsonl (or found boxes)")
    det.add_argument(
        "--data",
        required=True,
        help="training folder (objects.jsonl + images; any task file with --boxes-from foreground)",
    )
    det.add_argument("--out", required=True, help="model directory to write")
    det.add_argument("--val", help="validation folder (default: hold out 10%% of --data)")
    det.add_argument("--epochs", type=int, default=14, help="epochs (default 14)")
    det.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    det.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    det.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    det.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    det.add_argument(
        "--init",
        help="continue from this model directory's detector (and copy its CMAL model along); the "
        "data's new tags and attributes are added to its vocabularies",
    )
    det.add_argument(
        "--boxes-from",
        choices=("objects", "foreground"),
        default="objects",
        help="objects (default): --data's objects.jsonl; foreground (with --init): boxes, and classes of "
        "alike outlines and colours, found in the pixels of images on a plain or slowly changing "
        "background (README, 'Bring your own images')",
    )
    det.add_argument(
        "--no-found-classes", dest="found_classes", action="store_false", help="found boxes only"
    )
    det.add_argument("--image-size", type=positive, help="input side, a multiple of 16 (default: --init's)")
    det.add_argument(
        "--drop-old-classes", action="store_true", help="with --init: keep only --data's classes"
    )
    det.add_argument(
        "--colour-channels",
        type=int,
        default=0,
        help="width of a shape-blind colour path (per-pixel convolutions, max-pooled) that alone "
        "reads colour, so colour and shape are told apart on pairs never seen (default 0: none)",
    )
    backbone = det.add_mutually_exclusive_group()
    backbone.add_argument(
        "--grey-backbone",
        action="store_true",
        help="the CNN that finds objects and reads their shape sees the image in grey",
    )
    backbone.add_argument(
        "--contrast-backbone",
        action="store_true",
        help="that CNN sees each pixel's distance from the image's mean colour instead: colour-blind "
        "like grey, but an object of the background's grey stays visible",
    )
    det.add_argument("--quiet", action="store_true", help="no progress bars")
    det.set_defaults(func=commands.train_detector)

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
    pre.add_argument("--preset", choices=("demo", "paper"), default="demo", help="model size (default demo)")
    pre.add_argument("--layers", type=positive, help="unified encoder layers (default: the preset's; demo 2)")
    pre.add_argument(
        "--objective", choices=("amc", "cmcl"), default="amc", help="alignment objective (default amc)"
    )
    pre.add_argument("--amc-weight", type=float, default=1.0, help="λ in MLM + ITM + λ·AMC (default 1)")
    pre.add_argument(
        "--swap-fraction", type=fraction, default=0.5, help="share of anchor pairs swapped (default 0.5)"
    )
    pre.add_argument(
        "--false-swap", type=fraction, default=0.2, help="share of swaps that are false (default 0.2)"
    )
    pre.add_argument(
        "--geometry-mlm",
        type=fraction,
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
    pre.set_defaults(func=commands.train_pretrain)

    fin = train.add_parser("finetune", help="multi-task fine-tuning (ve, rec, vqa, itm)")
    start = "pre-trained model directory (or one with only a detector)"
    fin.add_argument("--init", required=True, help=start)
    subset = f"comma-separated subset of {','.join(TASK_IDS)}"
    fin.add_argument("--tasks", default=",".join(TASK_IDS), help=subset)
    fin.add_argument(
        "--detector",
        metavar="MODEL_DIR",
        help="take the detector from this model directory instead of --init's, e.g. to move a "
        "fine-tuned model onto a retrained detector (the region features change, so the CMAL model "
        "adapts to them as it trains; default: --init's detector)",
    )
    fin.add_argument("--train", required=True, help="training folder")
    fin.add_argument("--val", help="validation folder (default: hold out 5%% of --train)")
    fin.add_argument("--out", required=True, help="model directory to write")
    fin.add_argument(
        "--cmap-mode", choices=("swap", "mix", "off"), help="CMAP mode (default: the init model's)"
    )
    fin.add_argument(
        "--slot-geometry",
        action="store_true",
        help="add each region's box embedding to the slots CMAP fills, so a swap keeps the named "
        "objects' geometry (a new, freshly initialised part; it matters only in swap and mix mode)",
    )
    fin.add_argument(
        "--anchor-markers",
        action="store_true",
        help="add a learned marker to both slots of each anchor pair (word and region), in any CMAP "
        "mode, so a question naming two objects can find both regions (a new, freshly initialised part)",
    )
    fin.add_argument(
        "--swap-ambiguous",
        dest="skip_ambiguous",
        action="store_false",
        help="swap a word that matches several regions (two circles) with the first of them, as "
        "models fine-tuned before this option did (default: leave such words unswapped)",
    )
    strict = "a named colour or size must be the region's for its noun to anchor (kept by later fine-tuning)"
    fin.add_argument("--strict-attribute-anchors", action="store_true", help=strict)
    generic = "object, shape and thing anchor to the regions of the colour or size they name (kept later)"
    fin.add_argument("--generic-noun-anchors", action="store_true", help=generic)
    group = "plural and indefinite nouns (how many circles, a circle?) keep all their regions (kept later)"
    fin.add_argument("--group-anchors", action="store_true", help=group)
    layers = "unified encoder layers when --init holds no CMAL model (default: the demo preset's); "
    fin.add_argument("--layers", type=positive, help=layers + "a pre-trained model keeps its own")
    fin.add_argument(
        "--dropout",
        type=fraction,
        help="dropout in every transformer layer while fine-tuning (default: the init model's, 0.1 for "
        "the presets; 0 skips drawing the masks, so steps run faster: scripts/finetune_speed.py --dropouts)",
    )
    fin.add_argument(
        "--init-blend",
        type=fraction,
        default=1.0,
        help="start from λ·pre-trained + (1-λ)·fresh weights (default 1: the pre-trained weights)",
    )
    fin.add_argument(
        "--adapt-detector",
        action="store_true",
        help="also train the detector's backbone and region-feature path through the task losses (for "
        "images the detector never saw); its heads train on --train's objects.jsonl when it has one, "
        "else stay frozen and its region proposals are kept by distillation (default: frozen detector)",
    )
    lr_help = "with --adapt-detector: the detector's learning rate is --lr times this (default 1)"
    fin.add_argument("--detector-lr-scale", type=float, default=1.0, help=lr_help)
    fin.add_argument(
        "--new-words",
        type=int,
        default=3,
        metavar="N",
        help="words of --train seen N times that the tokenizer spells in pieces (a new domain's "
        "nouns) become tokens, starting from their pieces' mean embedding (default 3; 0: off)",
    )
    fin.add_argument(
        "--data-share",
        type=fraction,
        default=1.0,
        help="train on this share of --train's images (drawn with --seed; all their examples), for "
        "low-data comparisons such as the card's ablation (default 1: all)",
    )
    fin.add_argument(
        "--ve-trains-itm",
        action="store_true",
        help="when VE and ITM are both fine-tuned, entailed and contradicted hypotheses also train the "
        "ITM head as matching and non-matching texts (default: ITM learns from its own and grounding's)",
    )
    fin.add_argument(
        "--length-groups",
        type=int,
        default=1,
        metavar="N",
        help="run each batch as up to N sub-batches of similar text length, so short texts are not "
        "padded to the longest (same losses, less work; default 1: one padded batch)",
    )
    loop_options(fin, 10)
    fin.set_defaults(func=commands.train_finetune)

    exp = sub.add_parser(
        "export", help="export a model directory to ONNX / TorchScript graphs, with parity checks"
    )
    exp.add_argument("--model", required=True, help="model directory")
    exp.add_argument(
        "--format",
        default="all",
        choices=("onnx", "torchscript", "all", "triton"),
        help="default all; triton: the ONNX graphs plus a Triton model repository in OUT/triton",
    )
    exp.add_argument("--out", help="output folder (default MODEL/export)")
    exp.add_argument("--fp16", action="store_true", help="also write fp16 ONNX graphs (for GPUs)")
    exp.add_argument(
        "--int8", action="store_true", help="also write an int8 dynamically quantised fusion graph (CPU)"
    )
    exp.set_defaults(func=commands.export)

    srv = sub.add_parser("serve", help="serve a model over HTTP (as python -m service)")
    srv.add_argument("--model", help="model directory (default: CMAL_MODEL_DIR, else the bundled demo)")
    srv.add_argument("--graphs", help="exported graphs (default MODEL/export)")
    srv.add_argument(
        "--backend",
        choices=("onnx", "torchscript", "torch", "triton"),
        help="default onnx (triton: the server at CMAL_TRITON_URL)",
    )
    srv.add_argument(
        "--variant", choices=("fp32", "fp16", "int8"), help="graph variant (default fp32; see README)"
    )
    srv.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--log-level", default="info", help="default info")
    srv.set_defaults(func=commands.serve)

    bench = sub.add_parser(
        "bench", help="measure the engine and the service over HTTP (JSON report and PNG plot)"
    )
    bench.add_argument("--preset", choices=("demo", "paper"), default="demo",
                       help="demo: the bundled model; paper: the paper's size with random weights "
                       "(default demo)")  # fmt: skip
    bench.add_argument("--model", help="measure this model directory instead of a preset")
    bench.add_argument("--graphs", help="its exported graphs (default: exported into --out)")
    bench.add_argument("--out", help="output folder (default runs/bench/PRESET)")
    bench.add_argument("--backends", help="comma-separated, the first is swept (default onnx,onnx-int8,"
                       "torchscript,torch; paper: onnx,torch); triton starts a local tritonserver "
                       "(make tritonserver)")  # fmt: skip
    bench.add_argument("--batch-sizes", default="1,8,32", help="engine batch sizes (default 1,8,32)")
    bench.add_argument("--concurrency", default="1,8,32,64", help="closed-loop clients (default 1,8,32,64)")
    bench.add_argument("--load", default="0.5", help="open-loop rates as fractions of the best throughput")
    bench.add_argument("--seconds", type=float, default=10.0, help="seconds per measured point (default 10)")
    bench.add_argument("--images", type=int, default=300, help="test images, one question each (default 300)")
    bench.add_argument("--threads", type=int, default=0, help="inference threads (default: the runtime's)")
    bench.add_argument("--processes", type=positive, default=1, help="server processes (default 1)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=commands.bench)

    cal = sub.add_parser(
        "calibrate",
        help="choose when grounding declines (no box): the threshold on the image-text matching "
        "score, from a validation folder whose rec.jsonl has expressions with box null",
    )
    cal.add_argument("--model", required=True, help="model directory (its labels.json gets the threshold)")
    cal.add_argument("--data", required=True, help="validation folder (never the test split)")
    cal.add_argument("--quiet", action="store_true", help="no progress bars")
    cal.set_defaults(func=commands.calibrate)

    ev = sub.add_parser("evaluate", help="evaluate a model directory on a dataset folder")
    ev.add_argument("--model", required=True, help="model directory")
    ev.add_argument("--data", required=True, help="dataset folder in the canonical formats")
    ev.add_argument(
        "--task",
        default="all",
        choices=(*TASK_IDS, "detection", "all"),
        help="one task, or all (default): every task the folder has a data file for",
    )
    ev.add_argument("--output", help="write the results as JSON here")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=commands.evaluate)
    return parser


def _show_library_messages(quiet: bool) -> None:
    """Print the ``cmal`` package's log messages (INFO and up; WARNING and up when ``quiet``)."""
    logger = logging.getLogger("cmal")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run the ``cmal`` command line on ``argv`` (default ``sys.argv``); returns the exit status.

    A ``ValueError`` or ``FileNotFoundError`` is printed as ``error: ...`` and gives status 2.
    """
    args = build_parser().parse_args(argv)
    _show_library_messages(quiet=getattr(args, "quiet", False))
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
