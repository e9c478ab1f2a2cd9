"""Evaluation of a model directory on a dataset folder, from pixels (detector regions, not
ground-truth boxes), for the tasks ve, rec, vqa, itm and detection.

Definitions: entailment accuracy; grounding accuracy = the top region's box has IoU >= 0.5 with
the ground truth; VQA accuracy = share of questions whose top answer is among the given answers;
ITM accuracy at probability 0.5 and ROC AUC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cmal.imaging import iou
from cmal.model.cmal import CMAL
from cmal.model.io import Vocabularies, load_cmal
from cmal.regions import RegionTable, detect_folder
from cmal.train.examples import Example, collate, load_examples
from cmal.train.steps import encode_batch

TASKS = ("ve", "rec", "vqa", "itm")


@torch.no_grad()
def predict(
    model: CMAL, examples: Sequence[Example], table: RegionTable, batch_size: int = 128
) -> dict[str, np.ndarray]:
    """Every head's output for ``examples`` (fine-tuning/inference inputs: true swaps, no masking)."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"ve": [], "itm": [], "vqa": [], "rec": []}
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], table, pretrain=False)
        enc = encode_batch(model, batch)
        out = model.tasks(enc.sequence, batch["region_valid"])
        parts["ve"].append(out.ve_logits.numpy())
        parts["itm"].append(out.itm_logits.numpy())
        parts["vqa"].append(out.vqa_logits.numpy())
        parts["rec"].append(out.rec_logits.numpy())
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


def task_metrics(
    task: str,
    examples: Sequence[Example],
    out: dict[str, np.ndarray],
    table: RegionTable,
    answers: Sequence[str],
) -> dict[str, float]:
    """Metrics of one task from ``predict`` output on that task's examples."""
    n = len(examples)
    if task == "ve":
        pred = out["ve"].argmax(-1)
        return {"accuracy": float(np.mean(pred == [e.label for e in examples])), "n": n}
    if task == "itm":
        prob = 1 / (1 + np.exp(-out["itm"]))
        labels = np.array([e.match for e in examples])
        return {
            "accuracy": float(np.mean((prob > 0.5) == (labels > 0.5))),
            "auc": roc_auc(prob, labels),
            "n": n,
        }
    if task == "vqa":
        top = out["vqa"].argmax(-1)
        hits = [answers[int(t)] in e.answers for t, e in zip(top, examples, strict=True)]
        return {"accuracy": float(np.mean(hits)), "n": n}
    if task == "rec":
        hits = []
        for logits, e in zip(out["rec"], examples, strict=True):
            k = int(logits.argmax())
            w, h = table.sizes[e.row]
            ok = bool(table.valid[e.row, k]) and e.box is not None
            box = table.boxes[e.row, k] * np.array([w, h, w, h], np.float32)
            hits.append(ok and iou(box[None], np.array([e.box], np.float32))[0, 0] >= 0.5)
        return {"accuracy": float(np.mean(hits)), "n": n}
    raise ValueError(f"unknown task {task!r}")


def evaluate_examples(
    model: CMAL, examples: Sequence[Example], table: RegionTable, vocab: Vocabularies, tasks: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Metrics per task over already-loaded examples."""
    results = {}
    for task in tasks:
        subset = [e for e in examples if e.task == task]
        if subset:
            results[task] = task_metrics(task, subset, predict(model, subset, table), table, vocab.answers)
    return results


def evaluate_dir(
    model_dir: Path, data_dir: Path, tasks: Sequence[str], progress: bool = True
) -> dict[str, dict[str, float]]:
    """Evaluate a model directory on the task files of ``data_dir`` that exist."""
    model, tokenizer, vocab = load_cmal(model_dir)
    present = [t for t in tasks if (data_dir / f"{t}.jsonl").is_file()]
    missing = sorted(set(tasks) - set(present))
    if missing:
        raise FileNotFoundError(f"{data_dir} has no {', '.join(m + '.jsonl' for m in missing)}")
    table = detect_folder(model_dir, data_dir, progress=progress)
    examples = load_examples(data_dir, present, table, tokenizer, vocab)
    return evaluate_examples(model, examples, table, vocab, present)
