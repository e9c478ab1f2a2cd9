"""The task registry: the one list of CMAL's downstream tasks and how each one is scored.

Every other module reads the tasks from here — the CLI, training, evaluation, export parity,
the model card and the service (routes and metric labels) — so adding a task means adding it
here, giving the model its head, teaching the data generator to write its file, and testing it
(see CONTRIBUTING.md). Torch-free (numpy).

Each task has two names: its ``id`` (data file ``<id>.jsonl``, ``cmal evaluate --task``,
metrics keys) and its ``route`` (``/v1/<route>`` and the service's ``task`` metric label).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmal.imaging import iou

VE_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")  # the entailment classes
MIN_GROUNDING_IOU = 0.5  # a grounding answer is right when its box overlaps the truth this much


@dataclass(frozen=True)
class RegionRow:
    """One image's detected regions, as a grounding decision needs them."""

    boxes: np.ndarray  # (K, 4) normalised x1, y1, x2, y2
    valid: np.ndarray  # (K,) bool
    size: tuple[int, int]  # the image's (width, height) in pixels

    def pixels(self, slot: int) -> np.ndarray:
        """Slot ``slot``'s box in pixels."""
        w, h = self.size
        return np.asarray(self.boxes[slot] * np.array([w, h, w, h], np.float32))


def top_region(logits: np.ndarray, valid: np.ndarray) -> int | None:
    """The grounding decision: the best-scored valid slot, None when no region is valid."""
    if not valid.any():
        return None
    return int(np.where(valid, logits.astype(np.float64), -np.inf).argmax())


def declines(match_logit: float, decline_below: float | None) -> bool:
    """The grounding decline rule: an expression names nothing in the image (answer: no box) when
    the image-text matching logit of (image, expression) is below the model's threshold
    (``decline_below``, chosen on validation data by `cmal calibrate`; None: never declines)."""
    return decline_below is not None and float(match_logit) < decline_below


@dataclass(frozen=True)
class Gold:
    """What a scored example is compared with, besides its own task's gold value."""

    answers: Sequence[str] = ()  # the model's VQA answer vocabulary
    regions: RegionRow | None = None  # grounding: the image's detected regions
    declined: bool = False  # grounding: the model said the expression names nothing (`declines`)

    @classmethod
    def of(
        cls, answers: Sequence[str], regions: RegionRow, match_logit: float, decline_below: float | None
    ) -> Gold:
        """The context of one example: the answer vocabulary, its image's regions, and whether the
        model declines to ground its text."""
        return cls(answers, regions, declines(match_logit, decline_below))


def _entailment_hit(logits: np.ndarray, label: str, _: Gold) -> bool:
    return VE_LABELS[int(logits.argmax())] == label


def _grounding_hit(logits: np.ndarray, box: Sequence[float] | None, gold: Gold) -> bool:
    if box is None:  # the expression names nothing: right only when the model declines
        return gold.declined
    if gold.regions is None:
        raise ValueError("grounding is scored against detected regions: pass Gold(regions=...)")
    if gold.declined:
        return False
    slot = top_region(logits, gold.regions.valid)
    if slot is None:
        return False
    overlap = iou(gold.regions.pixels(slot)[None], np.array([box], np.float32))[0, 0]
    return bool(overlap >= MIN_GROUNDING_IOU)


def _vqa_hit(logits: np.ndarray, given: Sequence[str], gold: Gold) -> bool:
    return gold.answers[int(logits.argmax())] in given


def _matching_hit(logit: np.ndarray, match: bool, _: Gold) -> bool:
    return bool(float(logit) > 0.0) == bool(match)


def _top(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits.argmax(-1))


def _positive(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits > 0)


def _lead(logits: np.ndarray) -> np.ndarray:
    """Per row: how far the top logit leads the runner-up."""
    top2 = np.sort(logits.astype(np.float64), axis=-1)[:, -2:]
    return np.asarray(top2[:, 1] - top2[:, 0])


def _distance_from_zero(logits: np.ndarray) -> np.ndarray:
    return np.abs(logits.astype(np.float64))


@dataclass(frozen=True)
class Task:
    """One downstream task: its names, data, model output and scoring."""

    id: str  # data file <id>.jsonl, CLI --task, metrics keys
    route: str  # service endpoint /v1/<route> and the metric label
    name: str  # for people: tables, cards
    text_field: str  # the record field holding the text
    gold_field: str  # the record field holding the truth
    output: str  # the fusion graph's output (one row per text)
    metric: str  # what "accuracy" means for this task, for cards and docs
    hit: Callable[[np.ndarray, Any, Gold], bool]  # (this row's logits, truth, context) -> right?
    decide: Callable[[np.ndarray], np.ndarray]  # a batch's logits -> each row's decision
    margin: Callable[[np.ndarray], np.ndarray]  # a batch's logits -> how decisively each row decided
    demo_target: float  # the accuracy the Shapes demo model aims for on its i.i.d. test split

    @property
    def data_file(self) -> str:
        """The canonical data file's name."""
        return f"{self.id}.jsonl"

    def accuracy(self, logits: np.ndarray, truths: Sequence[Any], golds: Sequence[Gold] | Gold) -> float:
        """Share of rows of ``logits`` right against ``truths`` (``golds``: one per row or shared)."""
        if not len(truths):
            return float("nan")
        each = golds if isinstance(golds, Sequence) else [golds] * len(truths)
        return float(np.mean([self.hit(row, t, g) for row, t, g in zip(logits, truths, each, strict=True)]))


TASKS: tuple[Task, ...] = (
    Task(
        id="ve",
        route="entailment",
        name="visual entailment",
        text_field="hypothesis",
        gold_field="label",
        output="ve_logits",
        metric="accuracy over entailment / neutral / contradiction",
        hit=_entailment_hit,
        decide=_top,
        margin=_lead,
        demo_target=0.90,
    ),
    Task(
        id="rec",
        route="grounding",
        name="grounding (IoU ≥ 0.5)",
        text_field="expression",
        gold_field="box",
        output="rec_logits",
        metric=f"the top valid region's box has IoU ≥ {MIN_GROUNDING_IOU} with the true box; for an "
        "expression that names nothing, the model declines (no box)",
        hit=_grounding_hit,
        decide=_top,
        margin=_lead,
        demo_target=0.90,
    ),
    Task(
        id="vqa",
        route="vqa",
        name="VQA",
        text_field="question",
        gold_field="answers",
        output="vqa_logits",
        metric="the top answer is among the given answers",
        hit=_vqa_hit,
        decide=_top,
        margin=_lead,
        demo_target=0.85,
    ),
    Task(
        id="itm",
        route="matching",
        name="image-text matching",
        text_field="text",
        gold_field="match",
        output="itm_logits",
        metric="match probability > 0.5 agrees with the label (ROC AUC too)",
        hit=_matching_hit,
        decide=_positive,
        margin=_distance_from_zero,
        demo_target=0.90,
    ),
)
"""Every downstream task, in display order."""

TASK_IDS: tuple[str, ...] = tuple(t.id for t in TASKS)
ROUTES: tuple[str, ...] = tuple(t.route for t in TASKS)
_BY_ID = {t.id: t for t in TASKS}
_BY_ROUTE = {t.route: t for t in TASKS}


def get_task(id_or_route: str) -> Task:
    """The task with this id or route; `ValueError` naming the choices otherwise."""
    found = _BY_ID.get(id_or_route) or _BY_ROUTE.get(id_or_route)
    if found is None:
        raise ValueError(f"unknown task {id_or_route!r}; choose from {', '.join(TASK_IDS)}")
    return found
