"""The training loop shared by pre-training and fine-tuning.

Progress bars, validation after every epoch, best-checkpoint keeping (safetensors), and resuming:
after each epoch the model, optimizer and loop state go to ``<out>/checkpoint/``; ``resume=True``
continues from there. Under torchrun each process takes an equal slice of every global batch and
DDP averages gradients, so N processes compute what one process does on the same global batch.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cmal.model.io import drop_retired
from cmal.train.distributed import DistInfo, barrier
from cmal.train.examples import Example


@dataclass(frozen=True)
class TrainSettings:
    """Settings of a pre-training or fine-tuning run; fields marked with a stage apply to that stage only."""

    epochs: int = 10
    batch_size: int = 64  # global batch (split across processes under torchrun)
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: float = 0.06  # share of steps with linear warm-up, then cosine decay
    seed: int = 0
    amc_weight: float = 1.0  # λ in MLM + ITM + λ·AMC
    swap_fraction: float = 0.5  # pre-training: share of one-to-one anchors swapped
    false_swap: float = 0.2  # pre-training: share of swaps filled from a non-matching slot
    geometry_mlm: float = 0.15  # pre-training: MLM probability of size and position words
    plain_pass: bool = False  # pre-training: MLM and ITM on an unswapped pass (see PretrainStep)
    skip_ambiguous: bool = True  # fine-tuning: words that match several regions are not swapped
    # fine-tuning: strict attribute anchors (Vocabularies.strict_attributes); kept once a model has them
    strict_attribute_anchors: bool = False
    # fine-tuning: nouns of no concept that anchor by their phrase's colour and size
    # (Vocabularies.generic_nouns; the command line's are `GENERIC_NOUNS`); kept once a model has them
    generic_nouns: tuple[str, ...] = ()
    group_anchors: bool = False  # fine-tuning: Vocabularies.group_anchors; kept once a model has them
    init_blend: float = 1.0  # fine-tuning: weight of the pre-trained weights against a fresh init
    adapt_detector: bool = False  # fine-tuning: train the detector's backbone and feature path too
    detector_lr_scale: float = 1.0  # fine-tuning with adapt_detector: its learning rate x this
    data_share: float = 1.0  # fine-tuning: share of the training images used (a seeded draw)
    ve_trains_itm: bool = False  # fine-tuning: entailed / contradicted hypotheses are ITM examples too
    length_groups: int = 1  # fine-tuning: run each batch as up to this many sub-batches by text length
    new_words: int = 3  # fine-tuning: split words of --train seen this often get a token (0: off)
    threads: int = 0  # torch threads per process; 0 = default
    max_steps: int = 0  # stop after this many steps (0 = no limit); for smoke tests
    optimizer: str = "adamw"  # adamw, or sgd (momentum 0.9): no update normalisation, for exact checks
    resume: bool = False
    holdout_seed: int = 1234  # draws the 5% validation hold-out when no validation folder is given


# the fine-tuning options a run writes to its metrics.json (beside the loop settings in the checkpoint)
RECORDED_FINETUNE_SETTINGS = (
    "adapt_detector",
    "detector_lr_scale",
    "data_share",
    "ve_trains_itm",
    "length_groups",
)


def lr_at(step: int, total: int, s: TrainSettings) -> float:
    """Learning rate at ``step`` (from 0) of ``total``: linear warm-up over the first ``s.warmup`` share of
    the steps, then cosine decay to 0.
    """
    warm = max(1, int(total * s.warmup))
    if step < warm:
        return s.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return s.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = opt.state_dict()
    tensors = {}
    for idx, st in state["state"].items():
        for name, value in st.items():
            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": state["param_groups"]}


def _load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def param_groups(model: nn.Module, s: TrainSettings) -> list[dict[str, Any]]:
    """The optimiser's parameter groups of ``model``'s trainable parameters: weight decay on
    matrices only, and the learning rate scaled by ``lr_scale`` (``s.detector_lr_scale`` for the
    detector adapted end to end, the ``detector.*`` parameters, else 1). The two groups at scale 1
    always exist, so checkpoints of runs without a detector keep their layout."""

    def scale(name: str) -> float:
        return s.detector_lr_scale if name.startswith("detector.") else 1.0

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = []
    for lr_scale in sorted({scale(n) for n, _ in named} | {1.0}):
        for decay in (True, False):
            picked = [p for n, p in named if scale(n) == lr_scale and (p.ndim >= 2) == decay]
            if picked or lr_scale == 1.0:
                weight_decay = s.weight_decay if decay else 0.0
                groups.append({"params": picked, "weight_decay": weight_decay, "lr_scale": lr_scale})
    return groups


def fit(
    step_module: nn.Module,
    model: nn.Module,
    examples: Sequence[Example],
    make_batch: Callable[[Sequence[Example], int], dict[str, torch.Tensor]],
    validate: Callable[[], dict[str, Any]],
    save_best: Callable[[], None],
    out_dir: Path,
    settings: TrainSettings,
    dist: DistInfo,
    desc: str,
    progress: bool = True,
    order: Callable[[int], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Train ``step_module`` (whose forward returns named losses) over ``examples``.

    Args:
        step_module: module computing the losses of a batch; wrapped in DDP under torchrun.
        model: the model being trained (its parameters are optimised and checkpointed).
        examples: the training examples.
        make_batch: builds the tensors of a list of examples for an epoch.
        validate: returns validation metrics with a ``score`` to maximise (main process only).
        save_best: writes the model directory (called when the score improves).
        out_dir: where ``checkpoint/`` and ``history.json`` go.
        settings: loop settings.
        dist: process group info.
        desc: progress bar label.
        progress: show progress bars.
        order: epoch -> the order of the examples (default: a random permutation per epoch).

    Returns:
        The best validation metrics, with the epoch they came from.
    """
    s = settings
    if s.threads:
        torch.set_num_threads(s.threads)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = param_groups(model, s)
    if s.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=s.lr)
    elif s.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=s.lr, momentum=0.9)
    else:
        raise ValueError(f"optimizer must be adamw or sgd, got {s.optimizer!r}")
    runner: nn.Module = step_module
    if dist.world > 1:
        runner = DistributedDataParallel(step_module, find_unused_parameters=True)
    steps_per_epoch = max(1, len(examples) // s.batch_size)
    total = steps_per_epoch * s.epochs
    if s.max_steps:
        total = min(total, s.max_steps)
    ckpt = out_dir / "checkpoint"
    start_epoch, step, best, history = 1, 0, None, []
    if s.resume and (ckpt / "trainer.json").is_file():
        meta = json.loads((ckpt / "trainer.json").read_text())
        tensors = load_file(str(ckpt / "state.safetensors"))
        if drop_retired(tensors, prefix="model.").keys() != tensors.keys():
            # the optimizer's state is laid out by parameter index: it cannot skip one
            raise ValueError(
                f"{ckpt} was written by an older CMAL (with the grounding scorer's bias) and cannot be "
                "resumed; start a new run from its model directory with --init instead"
            )
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(opt, tensors, meta["optimizer"])
        start_epoch, step, best, history = meta["epoch"] + 1, meta["step"], meta["best"], meta["history"]
        if dist.main:
            tqdm.write(f"resuming from {ckpt} after epoch {meta['epoch']} (step {step})")
    started = time.perf_counter()
    for epoch in range(start_epoch, s.epochs + 1):
        if step >= total:
            break
        runner.train()
        order_now = (
            order(epoch) if order else np.random.default_rng([s.seed, epoch]).permutation(len(examples))
        )
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{desc} epoch {epoch}/{s.epochs}",
            disable=not (progress and dist.main),
        )
        sums: dict[str, float] = {}
        for i in bar:
            if step >= total:
                break
            idx = order_now[i * s.batch_size : (i + 1) * s.batch_size]
            mine = idx[dist.rank :: dist.world]
            batch = make_batch([examples[j] for j in mine], epoch)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, s) * g.get("lr_scale", 1.0)
            losses = runner(batch)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if i % 10 == 0:
                bar.set_postfix({k: f"{v / (i + 1):.3f}" for k, v in sums.items()})
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            **{f"train_{k}": v / max(1, steps_per_epoch) for k, v in sums.items()},
        }
        if dist.main:
            metrics = validate()
            record.update(metrics)
            history.append(record)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            tqdm.write(f"{desc} epoch {epoch}: {shown}")
            if best is None or metrics["score"] > best["score"]:
                best = {**metrics, "epoch": epoch}
                save_best()
            tensors, optim_meta = _optimizer_tensors(opt)
            tensors.update({f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()})
            ckpt.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(ckpt / "state.safetensors"))
            meta = {
                "epoch": epoch,
                "step": step,
                "best": best,
                "history": history,
                "optimizer": optim_meta,
                "settings": asdict(s),
            }
            (ckpt / "trainer.json").write_text(json.dumps(meta, indent=2) + "\n")
            (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        barrier(dist)
    if best is not None:
        best["train_seconds"] = round(time.perf_counter() - started, 1)
    return best or {}
