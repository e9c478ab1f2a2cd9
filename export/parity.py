"""Parity of exported graphs with PyTorch, run as part of every export.

Two kinds of check, kept apart:

- **Export mechanics** (always a gate): fp32 graphs (ONNX Runtime and TorchScript), on batches of
  1, 7 and 32 real Shapes examples (padding in both text and regions), reproduce PyTorch within
  1e-4 on every output, and every task decision (entailment label, ITM side, VQA answer, grounded
  region; detector tags, attributes, validity) is identical.
- **Quantisation policy** (`VariantPolicy`, a gate only where the caller asks for it): an fp16 or
  int8 pipeline may stand in for fp32 when it agrees with fp32's decision on the examples where
  fp32 decided with a margin, and task accuracy moves by less than a point. On an untrained model
  nearly every decision is a near-tie, so there the figures are recorded but mean nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from cmal.data.formats import load
from cmal.data.generate import generate_split
from cmal.detector.model import Detector
from cmal.imaging import load_rgb, to_input
from cmal.inference import DETECTOR_OUTPUTS, FUSION_INPUTS, FUSION_OUTPUTS, ModelFiles, Regions, encode_batch
from cmal.model.cmal import CMAL
from cmal.regions import dataset_images
from cmal.tasks import TASK_IDS, TASKS, Gold, RegionRow, get_task

FP32_TOLERANCE = 1e-4
BATCH_SIZES = (1, 7, 32)


@dataclass(frozen=True)
class VariantPolicy:
    """When a reduced-precision (fp16 / int8) graph may replace fp32: the one place for these figures."""

    examples: int = 500  # balanced over the tasks
    # a decision "has a margin" when fp32's top logit leads the runner-up (VE, VQA, grounding) or
    # the ITM logit is away from 0 by at least this much: a factor e between the two probabilities
    min_margin: float = 1.0
    min_agreement: float = 0.99  # share of margin decisions the variant keeps
    max_accuracy_change_points: float = 1.0  # per task, on all examples

    def passes(self, agreement: float, margin_examples: int, change: dict[str, float]) -> bool:
        """Whether a variant may replace fp32: some decisions with a margin, enough agreement on them,
        and every task's accuracy change under the limit.
        """
        return (
            margin_examples > 0
            and agreement >= self.min_agreement
            and all(abs(c) < self.max_accuracy_change_points for c in change.values())
        )


VARIANT_POLICY = VariantPolicy()

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


class ParityItem(NamedTuple):
    """One example of a parity set."""

    task: str  # task id
    text: str
    row: int  # its image's row in the set
    truth: Any  # the record's truth (Task.gold_field)


@dataclass
class ParitySet:
    """Real examples to compare backends on: images and items over every task."""

    images: np.ndarray  # (N, 3, S, S) float32
    sizes: list[tuple[int, int]]
    items: list[ParityItem]


def make_parity_set(image_size: int, num_images: int = 125, seed: int = 987_654) -> ParitySet:
    """Generate a small Shapes test split (a seed never used for training) and read it back."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_split(folder, seed=seed, num_images=num_images, split="test", progress=False)
        paths = dataset_images(folder)
        row = {p: i for i, p in enumerate(paths)}
        pics = [load_rgb(p) for p in paths]
        images = np.stack([to_input(im, image_size) for im in pics])
        items = [
            ParityItem(t.id, getattr(r, t.text_field), row[r.image], getattr(r, t.gold_field))
            for t in TASKS
            for r in load(folder / t.data_file, t.id)
        ]
    return ParitySet(images, [im.size for im in pics], items)


def detector_decisions(out: Sequence[np.ndarray]) -> np.ndarray:
    """Detector outputs -> (B, K, 2) tag and attribute id per region slot, -1 at invalid slots."""
    tags, attributes, valid = out[2], out[3], out[5]
    return np.stack([np.where(valid, tags, -1), np.where(valid, attributes, -1)], axis=-1)


def by_task(out: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The fusion graph's outputs (in FUSION_OUTPUTS order) by task id."""
    named = dict(zip(FUSION_OUTPUTS, out, strict=True))
    return {t.id: named[t.output] for t in TASKS}


def fusion_decisions(out: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Each row's decision per task."""
    return {task_id: get_task(task_id).decide(logits) for task_id, logits in by_task(out).items()}


def torch_runners(detector: Detector, model: CMAL) -> tuple[Runner, Runner]:
    """Detector and fusion runners over the eager PyTorch models (the parity reference)."""

    def det(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in detector.eval()(torch.from_numpy(feeds["images"]))]

    def fuse(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in model.eval()(*(torch.from_numpy(feeds[n]) for n in FUSION_INPUTS))]

    return det, fuse


def onnx_runner(path: Path, outputs: Sequence[str]) -> Runner:
    """A runner for one ONNX graph on CPU: ``outputs`` in that order (feeds it does not take are dropped)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = session.run(list(outputs), {k: v for k, v in feeds.items() if k in names})
        return out

    return run


def torchscript_runner(path: Path, inputs: Sequence[str]) -> Runner:
    """A runner for one TorchScript graph, fed ``inputs`` in that order."""
    module = torch.jit.load(str(path))

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in module(*(torch.from_numpy(feeds[n]) for n in inputs))]

    return run


def _compare(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, float]:
    diffs = {}
    for name, a, b in zip(names, ref, got, strict=True):
        if a.shape != b.shape:
            raise AssertionError(f"{name}: shape {b.shape} != reference {a.shape}")
        diffs[name] = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
    return diffs


def fp32_parity(
    files: ModelFiles, data: ParitySet, reference: tuple[Runner, Runner], candidate: tuple[Runner, Runner]
) -> dict[str, Any]:
    """Max differences and decision mismatches of ``candidate`` vs ``reference`` per batch size."""
    ref_det, ref_fuse = reference
    cand_det, cand_fuse = candidate
    report: dict[str, Any] = {"max_abs_diff": {}, "decision_mismatches": 0, "batches": list(BATCH_SIZES)}
    worst: dict[str, float] = {}
    mismatches = 0
    for size in BATCH_SIZES:
        rows = list(range(size))
        feeds = {"images": data.images[rows]}
        d_ref, d_got = ref_det(feeds), cand_det(feeds)
        for k, v in _compare(d_ref, d_got, DETECTOR_OUTPUTS).items():
            worst[f"detector.{k}"] = max(worst.get(f"detector.{k}", 0.0), v)
        mismatches += int((detector_decisions(d_ref) != detector_decisions(d_got)).sum())
        regions = Regions.from_outputs(d_ref, [data.sizes[r] for r in rows])
        items = [it for it in data.items if it.row < size][:size]
        texts = [it.text for it in items]
        fused = encode_batch(files, texts, regions.take([it.row for it in items]))
        f_ref, f_got = ref_fuse(fused), cand_fuse(fused)
        for k, v in _compare(f_ref, f_got, FUSION_OUTPUTS).items():
            worst[f"fusion.{k}"] = max(worst.get(f"fusion.{k}", 0.0), v)
        a, b = fusion_decisions(f_ref), fusion_decisions(f_got)
        mismatches += sum(int((a[k] != b[k]).sum()) for k in a)
    report["max_abs_diff"] = worst
    report["decision_mismatches"] = mismatches
    report["passed"] = mismatches == 0 and max(worst.values()) <= FP32_TOLERANCE
    return report


def decision_margins(out: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """How decisively each row's decision was taken, per task (``Task.margin``)."""
    return {task_id: get_task(task_id).margin(logits) for task_id, logits in by_task(out).items()}


def _pipeline_decisions(
    files: ModelFiles, data: ParitySet, runners: tuple[Runner, Runner], examples: int
) -> tuple[list[Any], list[float], dict[str, float]]:
    """Per-item decision (for its own task), its margin, and accuracy per task of a full pipeline."""
    det, fuse = runners
    outs = [det({"images": data.images[i : i + 64]}) for i in range(0, len(data.images), 64)]
    regions = Regions.from_outputs([np.concatenate(parts) for parts in zip(*outs, strict=True)], data.sizes)
    items = _balanced(data.items, examples)
    decisions: list[Any] = []
    margins: list[float] = []
    hits: dict[str, list[bool]] = {}
    for start in range(0, len(items), 64):
        chunk = items[start : start + 64]
        sub = regions.take([it.row for it in chunk])
        fused = fuse(encode_batch(files, [it.text for it in chunk], sub))
        logits, d, m = by_task(fused), fusion_decisions(fused), decision_margins(fused)
        for j, it in enumerate(chunk):
            decisions.append((it.task, int(d[it.task][j])))
            margins.append(float(m[it.task][j]))
            row = RegionRow(sub.boxes[j], sub.valid[j], sub.sizes[j])
            gold = Gold.of(files.vocab.answers, row, logits["itm"][j], files.vocab.decline_below)
            hits.setdefault(it.task, []).append(get_task(it.task).hit(logits[it.task][j], it.truth, gold))
    return decisions, margins, {t: float(np.mean(v)) for t, v in hits.items()}


def _balanced(items: Sequence[ParityItem], n: int) -> list[ParityItem]:
    per_task = n // len(TASK_IDS)
    out: list[ParityItem] = []
    for task_id in TASK_IDS:
        out += [it for it in items if it.task == task_id][:per_task]
    return out


def variant_agreement(
    files: ModelFiles,
    data: ParitySet,
    fp32: tuple[Runner, Runner],
    variant: tuple[Runner, Runner],
    policy: VariantPolicy | None = VARIANT_POLICY,
) -> dict[str, Any]:
    """Decision agreement and accuracy change of a reduced-precision pipeline vs fp32.

    ``policy`` None records the figures without judging them (``"passed": None``): for models
    whose decisions carry no meaning yet, such as a randomly initialised one in a test.
    """
    measure = policy or VARIANT_POLICY  # what to measure on, even when not judging
    min_margin = measure.min_margin
    base, margins, base_acc = _pipeline_decisions(files, data, fp32, measure.examples)
    got, _, got_acc = _pipeline_decisions(files, data, variant, measure.examples)
    same = [a == b for a, b in zip(base, got, strict=True)]
    decided = [s for s, m in zip(same, margins, strict=True) if m >= min_margin]
    agreement = float(np.mean(decided)) if decided else 0.0
    change = {t: round(100 * (got_acc[t] - base_acc[t]), 2) for t in base_acc}
    return {
        "examples": len(base),
        "margin_examples": len(decided),
        "min_margin": min_margin,
        "decision_agreement": agreement,
        "decision_agreement_all": float(np.mean(same)),
        "accuracy_fp32": base_acc,
        "accuracy": got_acc,
        "accuracy_change_points": change,
        "policy": None if policy is None else asdict(policy),
        "passed": None if policy is None else policy.passes(agreement, len(decided), change),
    }
