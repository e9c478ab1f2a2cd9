"""Fusion-engine cost per row with and without length groups, by batch size (the README's "Batching").

    .venv/bin/python scripts/fusion_padding.py [--model models/shapes-demo] [--rounds 40]

Texts are random mixes of the four endpoints' texts from a fresh Shapes test split (seed 8080, the
soak's), paired with one image's regions, and fused by `cmal.inference.OnnxModel` on one thread
(as the service's workers run) with ``length_groups`` 1 (one padded batch) and the default. Both
settings run the same batches in turn, so a machine that slows down slows both; each batch's
logits are checked to agree. Prints and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmal.data.generate import generate_split  # noqa: E402
from cmal.inference import OnnxModel  # noqa: E402
from cmal.tasks import TASKS  # noqa: E402
from cmal.text.length_groups import INFERENCE_GROUPS  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32, 64)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "shapes-demo")
    parser.add_argument("--rounds", type=int, default=40, help="batches of each size")
    parser.add_argument("--out", type=Path, default=Path("runs/fusion-padding.json"))
    args = parser.parse_args()
    texts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        generate_split(Path(tmp), seed=8080, num_images=100, split="test", progress=False)
        for task in TASKS:
            for line in (Path(tmp) / task.data_file).read_text().splitlines():
                texts.append(json.loads(line)[task.text_field])
        image = Image.open(next((Path(tmp) / "images").iterdir())).convert("RGB")
    models = {g: OnnxModel(args.model, threads=1, length_groups=g) for g in (1, INFERENCE_GROUPS)}
    regions = models[1].detect([image] * max(BATCHES))
    rng = random.Random(0)
    seconds = {(g, b): 0.0 for g in models for b in BATCHES}
    for _ in tqdm(range(args.rounds), desc="rounds"):
        for b in BATCHES:
            batch, rows = rng.sample(texts, b), regions.take(list(range(b)))
            outputs = {}
            for g, model in models.items():
                began = time.perf_counter()
                outputs[g] = model.fuse(batch, rows)
                seconds[g, b] += time.perf_counter() - began
            for name, whole in outputs[1].items():
                np.testing.assert_allclose(outputs[INFERENCE_GROUPS][name], whole, rtol=1e-4, atol=1e-4)
    report = {
        "model": str(args.model),
        "length_groups": INFERENCE_GROUPS,
        "rounds": args.rounds,
        "ms_per_row": {
            str(b): {
                "one_batch": round(1000 * seconds[1, b] / (args.rounds * b), 3),
                "groups": round(1000 * seconds[INFERENCE_GROUPS, b] / (args.rounds * b), 3),
                "speed_up": round(seconds[1, b] / seconds[INFERENCE_GROUPS, b], 2),
            }
            for b in BATCHES
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
