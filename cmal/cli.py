"""The ``cmal`` command line: a thin shim over library functions.

Subcommands:
    cmal data shapes --out DIR --seed N --num-images N --split {train,val,test,compositional}
    cmal data check DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


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
