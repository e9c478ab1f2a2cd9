"""Fine-tuning steps per second with batches run as 1, 2, 3 … sub-batches of similar text length,
and with other dropout rates (`cmal train finetune --dropout`).

    .venv/bin/python scripts/finetune_speed.py --data data/demo/train [--groups 1 2 3 4]
    .venv/bin/python scripts/finetune_speed.py --data data/demo/train --groups 2 --dropouts 0.1 0

Times the training step (forward, backward, optimiser) of `cmal train finetune` on the bundled
model, all four tasks, on the same random batches for every setting. The settings take turns,
batch by batch, so a machine that slows down mid-run slows them alike; each figure is a ratio to
one group (today's padded batch) at the first dropout rate, measured in the same run. Also reports
the padded text positions per example, which the grouping is there to cut. Writes the figures as
JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmal.model.cmal import CMAL  # noqa: E402
from cmal.model.io import load_cmal  # noqa: E402
from cmal.regions import detect_folder  # noqa: E402
from cmal.tasks import TASK_IDS  # noqa: E402
from cmal.train.examples import collate, load_examples  # noqa: E402
from cmal.train.lengths import length_groups  # noqa: E402
from cmal.train.steps import FinetuneStep  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "shapes-demo")
    parser.add_argument("--data", type=Path, required=True, help="a training folder (all four task files)")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--dropouts", type=float, nargs="+", help="dropout rates (default: the model's)")
    parser.add_argument("--batches", type=int, default=40, help="timed batches per setting")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("runs/finetune-speed.json"))
    args = parser.parse_args()
    args.groups = sorted({1, *args.groups})  # one group, today's padded batch, is the reference

    model, tokenizer, vocab = load_cmal(args.model)
    table = detect_folder(args.model, args.data)
    examples = load_examples(args.data, TASK_IDS, table, tokenizer, vocab)
    answer_ids = {a: i for i, a in enumerate(vocab.answers)}
    order = np.random.default_rng(0).permutation(len(examples))
    batches = [
        collate(
            [examples[j] for j in order[i * args.batch_size : (i + 1) * args.batch_size]],
            table,
            pretrain=False,
            num_answers=model.config.num_answers,
            answer_ids=answer_ids,
        )
        for i in range(args.batches + 1)  # the first warms up every setting and is not timed
    ]
    dropouts = args.dropouts or [model.config.dropout]
    models = {}  # one copy of the model per dropout rate, the same weights
    for p in dropouts:
        models[p] = CMAL(model.config.replace(dropout=p))
        models[p].load_state_dict(model.state_dict())
        models[p].train()
    # steps happen, the models barely move
    optimisers = {p: torch.optim.AdamW(m.parameters(), lr=1e-6) for p, m in models.items()}
    settings = [(g, p) for p in dropouts for g in args.groups]
    steps = {(g, p): FinetuneStep(models[p], TASK_IDS, length_groups=g) for g, p in settings}
    seconds = dict.fromkeys(settings, 0.0)
    for i, batch in enumerate(tqdm(batches, desc="batches")):
        for (g, p), step in steps.items():
            began = time.perf_counter()
            losses = step(batch)
            optimisers[p].zero_grad(set_to_none=True)
            losses["total"].backward()
            optimisers[p].step()
            if i:
                seconds[g, p] += time.perf_counter() - began

    def positions(g: int) -> float:
        total = 0
        for batch in batches[1:]:
            lengths = batch["attention_mask"].sum(1)
            total += sum(len(rows) * int(lengths[rows].max()) for rows in length_groups(lengths, g))
        return total / (args.batches * args.batch_size)

    mean_text = float(np.mean([float(b["attention_mask"].sum(1).float().mean()) for b in batches[1:]]))
    regions = int(batches[0]["region_valid"].shape[1])
    report = {
        "model": str(args.model),
        "data": str(args.data),
        "batch_size": args.batch_size,
        "timed_batches": args.batches,
        "threads": torch.get_num_threads(),
        "mean_text_length": round(mean_text, 1),
        "region_slots": regions,
        "settings": {
            (str(g) if len(dropouts) == 1 else f"{g} groups, dropout {p}"): {
                "steps_per_s": round(args.batches / seconds[g, p], 3),
                "speed_vs_one_group": round(seconds[1, dropouts[0]] / seconds[g, p], 3),
                "padded_text_positions_per_example": round(positions(g), 1),
            }
            for g, p in settings
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
