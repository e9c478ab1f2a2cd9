"""How many of a folder's objects a model's detector proposes, overall and by size, shape and colour.

    .venv/bin/python scripts/proposal_recall.py MODEL_DIR FOLDER [--output FILE]

FOLDER needs ``objects.jsonl``. Unlike ``cmal evaluate --task detection`` it works when the
folder's shapes and colours are not in the detector's vocabulary (a shifted domain): it scores
only where the valid regions are. For each true object: ``iou`` counts it as found when some valid
region overlaps it at IoU >= 0.5, ``centre`` when some valid region's centre lies inside its box.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmal.imaging import boxes_to_pixels, iou  # noqa: E402
from cmal.regions import detect_images  # noqa: E402

IOU = 0.5


def object_hits(boxes: np.ndarray, truth: list[float]) -> tuple[bool, bool]:
    """(found at IoU >= 0.5, some region's centre inside the box) for one true box, pixel boxes."""
    if not len(boxes):
        return False, False
    x1, y1, x2, y2 = truth
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    centred = bool(((cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)).any())
    return bool(iou(boxes, np.array([truth], float))[:, 0].max() >= IOU), centred


def proposal_recall(model_dir: Path, folder: Path) -> dict[str, dict[str, float]]:
    """Recall by group ("all", "size=…", "shape=…", "colour=…"): iou, centre and the object count."""
    # raw lines, not cmal.data.formats.load: the canonical record has no object size, which the
    # generator writes beside it and this breakdown reads
    records = [json.loads(line) for line in (folder / "objects.jsonl").read_text().splitlines() if line]
    table = detect_images(model_dir, [folder / r["image"] for r in records], cache_dir=None)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for i, record in enumerate(records):
        valid = table.valid[i].astype(bool)
        boxes = boxes_to_pixels(table.boxes[i][valid], record["width"], record["height"])
        for obj in record["objects"]:
            found, centred = object_hits(boxes, obj["box"])
            groups = ["all", f"shape={obj['tag']}", f"colour={obj['attribute']}"]
            groups += [f"size={obj['size']}"] if "size" in obj else []
            for group in groups:
                counts[group][0] += 1
                counts[group][1] += found
                counts[group][2] += centred
    return {g: {"iou": f / n, "centre": c / n, "n": n} for g, (n, f, c) in sorted(counts.items())}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="model directory holding the detector")
    parser.add_argument("folder", type=Path, help="folder with objects.jsonl and its images")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    figures = proposal_recall(args.model, args.folder)
    for group, f in figures.items():
        print(f"{group:18s} n={f['n']:5d}  IoU>=0.5 {f['iou']:.3f}  centre {f['centre']:.3f}")
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
