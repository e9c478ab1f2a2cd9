"""Run a few fine-tuning steps with the library's trainer and save this process's weights.

Used by test_distributed.py both under ``torchrun --nproc_per_node 2`` and as a single process.
Usage: python ddp_worker.py DATA_DIR OUT_DIR NAME
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from cmal.data.vocab import COLOURS, SHAPES
from cmal.model.cmal import CMAL
from cmal.model.config import demo_config
from cmal.model_dir import Vocabularies
from cmal.regions import detect_folder
from cmal.text.tokenizer import train_tokenizer
from cmal.train.distributed import init_distributed, shutdown
from cmal.train.examples import collate, load_examples
from cmal.train.run import _corpus, _synonyms
from cmal.train.steps import FinetuneStep
from cmal.train.trainer import TrainSettings, fit

DEMO = Path(__file__).resolve().parents[2] / "models" / "shapes-demo"


def main() -> None:
    data, out, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    dist = init_distributed()
    table = detect_folder(DEMO, data, progress=False)
    tokenizer = train_tokenizer(_corpus(data), vocab_size=300)
    examples = load_examples(
        data, ("ve",), table, tokenizer, Vocabularies(list(SHAPES), list(COLOURS), [], _synonyms(SHAPES))
    )
    config = demo_config(
        umse_hidden=32, umse_heads=2, hidden=32, heads=2, layers=1, intermediate=64, dropout=0.0,
        vocab_size=tokenizer.get_vocab_size(), num_concepts=len(SHAPES), num_answers=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = CMAL(config)
    if dist.main:
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"{name}-init.safetensors")
        )
    # SGD: Adam's normalised update would blow float-level noise in near-zero gradients up to ±lr
    settings = TrainSettings(epochs=1, batch_size=8, lr=0.05, max_steps=4, seed=3, optimizer="sgd")
    fit(
        FinetuneStep(model, ("ve",)), model, examples,
        lambda batch, epoch: collate(batch, table, pretrain=False),
        lambda: {"score": 0.0}, lambda: None, out / f"{name}-run", settings, dist, "ddp", progress=False,
    )  # fmt: skip
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"{name}-rank{dist.rank}.safetensors"))
    shutdown(dist)
    print(f"rank {dist.rank}/{dist.world} done; colours {len(COLOURS)}")


if __name__ == "__main__":
    main()
