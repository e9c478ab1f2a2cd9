"""Detector and fusion time per call at batch 1, by threads per call, back to back or after idling.

    .venv/bin/python scripts/engine_threads.py MODEL_DIR IMAGE_DIR [--threads 1,2] [--calls 150]
        [--rounds 4]

What one client sees of the ONNX engine: each stage of one request (the detector on one image,
then the fusion graph on its regions and one question) timed on its own, with the sessions made
for each thread count. ``tight`` runs requests back to back, as `cmal bench`'s engine does;
``idle`` sleeps 1 ms before each, as the service's worker waits between one client's requests.
Thread counts and modes alternate in rounds, so a drift of the machine's speed touches all alike;
the figure is the median over rounds of each round's mean (ms).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from PIL import Image

from cmal.imaging import load_rgb
from cmal.inference import OnnxModel

QUESTION = "what colour is the small shape?"


def stage_times(model: OnnxModel, images: list[Image.Image], calls: int, idle: bool) -> tuple[float, float]:
    """Mean detector and fusion ms of ``calls`` single-image requests."""
    detect = fuse = 0.0
    for i in range(calls):
        if idle:
            time.sleep(0.001)
        start = time.perf_counter()
        regions = model.detect([images[i % len(images)]])
        middle = time.perf_counter()
        model.fuse([QUESTION], regions)
        detect, fuse = detect + middle - start, fuse + time.perf_counter() - middle
    return 1000 * detect / calls, 1000 * fuse / calls


def main() -> None:
    """Print a line per thread count and mode: detector, fusion and total ms at batch 1."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    images = [load_rgb(p) for p in sorted(args.images.glob("*.png"))[:64]]
    models = {int(t): OnnxModel(args.model, threads=int(t)) for t in args.threads.split(",")}
    runs: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for threads, model in models.items():
            for mode in ("tight", "idle"):
                times = stage_times(model, images, args.calls, mode == "idle")
                runs.setdefault((threads, mode), []).append(times)
    for (threads, mode), rounds in runs.items():
        detect = statistics.median(t[0] for t in rounds)
        fuse = statistics.median(t[1] for t in rounds)
        total = detect + fuse
        print(f"threads {threads} {mode:5s}: detector {detect:.2f}, fusion {fuse:.2f}, total {total:.2f} ms")


if __name__ == "__main__":
    main()
