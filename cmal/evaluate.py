"""Evaluation of a model directory on a dataset folder, from pixels (detector regions, not
ground-truth boxes), for any of the registry's tasks (`cmal.tasks`) and detection.

Each task's accuracy is the registry's definition (``Task.hit``), the same one export parity and
the error breakdown use; ITM also reports ROC AUC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cmal.model.cmal import CMAL
from cmal.model.io import load_cmal
from cmal.model_dir import Vocabularies
from cmal.regions import RegionTable, detect_folder
from cmal.tasks import TASKS, Gold, RegionRow, get_task
from cmal.train.examples import Example, collate, load_examples
from cmal.train.steps import encode_batch


@torch.no_grad()
def predict(
    model: CMAL, examples: Sequence[Example], table: RegionTable, batch_size: int = 128
) -> dict[str, np.ndarray]:
    """Every task head's output for ``examples``, by task id (fine-tuning/inference inputs: true
    swaps, no masking)."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {t.id: [] for t in TASKS}
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], table, pretrain=False)
        enc = encode_batch(model, batch)
        out = model.tasks(enc.sequence, batch["region_valid"])
        for t in TASKS:
            parts[t.id].append(getattr(out, t.output).numpy())
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def region_row(table: RegionTable, row: int) -> RegionRow:
    """One image's detected regions from a region table."""
    w, h = table.sizes[row]
    return RegionRow(table.boxes[row], table.valid[row], (int(w), int(h)))


def task_metrics(
    task_id: str,
    examples: Sequence[Example],
    out: dict[str, np.ndarray],
    table: RegionTable,
    vocab: Vocabularies,
) -> dict[str, float]:
    """Metrics of one task from ``predict`` output on that task's examples."""
    t = get_task(task_id)
    logits = out[t.id]
    golds = [
        Gold.of(vocab.answers, region_row(table, e.row), out["itm"][i], vocab.decline_below)
        for i, e in enumerate(examples)
    ]
    result = {"accuracy": t.accuracy(logits, [e.truth for e in examples], golds), "n": len(examples)}
    if t.id == "itm":
        labels = np.array([e.match for e in examples])
        result["auc"] = roc_auc(1 / (1 + np.exp(-logits)), labels)
    return result


def evaluate_examples(
    model: CMAL, examples: Sequence[Example], table: RegionTable, vocab: Vocabularies, tasks: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Metrics per task over already-loaded examples."""
    results = {}
    for task in tasks:
        subset = [e for e in examples if e.task == task]
        if subset:
            results[task] = task_metrics(task, subset, predict(model, subset, table), table, vocab)
    return results


def evaluate_dir(
    model_dir: Path, data_dir: Path, tasks: Sequence[str], progress: bool = True
) -> dict[str, dict[str, float]]:
    """Evaluate a model directory on ``tasks`` (task ids) of ``data_dir``; each needs its file.

    Raises:
        FileNotFoundError: a task's data file is missing from ``data_dir``.
    """
    wanted = [get_task(t) for t in tasks]
    missing = [t.data_file for t in wanted if not (data_dir / t.data_file).is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir} has no {', '.join(missing)}")
    model, tokenizer, vocab = load_cmal(model_dir)
    table = detect_folder(model_dir, data_dir, progress=progress)
    ids = [t.id for t in wanted]
    examples = load_examples(data_dir, ids, table, tokenizer, vocab)
    return evaluate_examples(model, examples, table, vocab, ids)
