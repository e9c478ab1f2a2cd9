"""Examples from the canonical JSONL files, tokenised and anchored, and their collation into batches.

All randomness of a batch (which anchors are swapped, false swaps, MLM masks) is drawn from a
generator seeded by (seed, epoch, example id), so a batch is the same whichever process builds it:
a DDP run and a single-process run see identical inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tokenizers import Tokenizer

from cmal.data.formats import load
from cmal.imaging import iou
from cmal.model_dir import Vocabularies
from cmal.regions import RegionTable
from cmal.tasks import TASKS, VE_LABELS
from cmal.text.anchors import Anchor, find_anchors, one_to_one, unambiguous
from cmal.text.encode import pad_ids, region_size_names, region_tag_names, tokenize
from cmal.text.tokenizer import MASK_ID, SEP_ID

# the text field of each kind of example: pre-training captions, then the registry's tasks
TEXT_FIELD = {"captions": "caption", **{t.id: t.text_field for t in TASKS}}
# each kind of example's number in a batch's "task" tensor
KIND_INDEX = {kind: i for i, kind in enumerate(TEXT_FIELD)}
# a hypothesis the image entails is a text that matches it; a contradicted one is a text that does not
VE_MATCH = {"entailment": 1.0, "contradiction": 0.0}
GOLD_FIELD = {t.id: t.gold_field for t in TASKS}
NO_LABEL = -1  # a batch's "label" tensor where an example has no class or slot to learn
VAL_CAP = 1500  # validation examples per task (keeps per-epoch validation short)
MIN_REC_IOU = 0.5  # a grounding example trains only if some detected region overlaps its box this much


@dataclass
class Example:
    """One example of any kind (pre-training caption or task record): token ids, anchors and its labels."""

    uid: int  # stable id (seeds the example's randomness)
    task: str  # captions, itm, ve, rec or vqa
    row: int  # row of the image in the region table
    ids: list[int]
    anchors: list[Anchor]  # all anchors (many-to-many)
    # itm: 1.0 / 0.0; rec: 1.0 when it names an object, 0.0 when it names nothing; ve: `VE_MATCH`,
    # -1.0 when neutral (the picture cannot settle it)
    match: float = -1.0
    # ve: the class id; rec: the region slot to ground to (None: no detected region overlaps the
    # true box enough to learn from)
    label: int | None = None
    box: tuple[float, float, float, float] | None = None  # rec: ground-truth box, pixels
    answers: tuple[str, ...] = ()  # vqa: given answers
    truth: Any = None  # a task's truth as the registry scores it (record field Task.gold_field)


def answer_vocabulary(folder: Path) -> list[str]:
    """VQA answers of a training folder, most frequent first (ties alphabetical)."""
    counts: Counter[str] = Counter()
    for q in load(folder / "vqa.jsonl", "vqa"):
        counts.update(set(q.answers))
    return [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def soft_scores(answers: Sequence[str], vocab: Mapping[str, int]) -> dict[int, float]:
    """Soft target per answer id: its votes / the top answer's votes (unknown answers dropped)."""
    votes = Counter(a for a in answers if a in vocab)
    if not votes:
        return {}
    top = max(votes.values())
    return {vocab[a]: n / top for a, n in votes.items()}


def best_region_slot(
    boxes: np.ndarray, valid: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]
) -> int | None:
    """The valid slot whose box (normalised (K, 4)) overlaps ``box`` (pixels of an image of ``size``)
    most, or None if none reaches MIN_REC_IOU."""
    if not valid.any():
        return None
    w, h = size
    overlaps = iou(np.array([box], np.float32), boxes * np.array([w, h, w, h], np.float32))[0]
    overlaps[~valid] = -1
    k = int(overlaps.argmax())
    return k if overlaps[k] >= MIN_REC_IOU else None


def best_region(table: RegionTable, row: int, box: tuple[float, float, float, float]) -> int | None:
    """`best_region_slot` for one image of a region table."""
    w, h = table.sizes[row]
    return best_region_slot(table.boxes[row], table.valid[row], (int(w), int(h)), box)


def load_examples(
    folder: Path,
    tasks: Sequence[str],
    table: RegionTable,
    tokenizer: Tokenizer,
    vocab: Vocabularies,
    uid_offset: int = 0,
) -> list[Example]:
    """Read the task files of ``folder`` into examples (anchors from the detected tags and, when
    ``vocab`` has attribute words, attributes; only words that match one region when ``vocab``
    says to skip ambiguous ones)."""
    keep = unambiguous if vocab.skip_ambiguous else list
    examples: list[Example] = []
    for task in tasks:
        records = load(folder / f"{task}.jsonl", task)
        encoded = tokenize(tokenizer, [getattr(r, TEXT_FIELD[task]) for r in records])
        for r, enc in zip(records, encoded, strict=True):
            row = table.row(r.image)
            tags = region_tag_names(table.tags[row], table.valid[row], vocab.tags)
            attributes = region_tag_names(table.attributes[row], table.valid[row], vocab.attributes)
            sizes = region_size_names(table.boxes[row], table.valid[row], table.sizes[row], vocab)
            ex = Example(
                uid=uid_offset + len(examples),
                task=task,
                row=row,
                ids=enc.ids,
                anchors=keep(
                    find_anchors(
                        enc.words,
                        tags,
                        vocab.tags,
                        vocab.synonyms,
                        attributes,
                        vocab.attribute_words,
                        vocab.strict_attributes,
                        sizes,
                        vocab.size_words,
                        vocab.generic_nouns,
                        vocab.group_anchors,
                    )
                ),
                truth=getattr(r, GOLD_FIELD[task]) if task in GOLD_FIELD else None,
            )
            if task == "itm":
                ex.match = float(r.match)
            elif task == "ve":
                ex.label = VE_LABELS.index(r.label)
                ex.match = VE_MATCH.get(r.label, -1.0)  # what the ITM head may learn of it (`FinetuneStep`)
            elif task == "rec":
                ex.box = r.box  # None: it names nothing (no slot to learn; scored as a decline)
                ex.match = float(r.box is not None)  # what the ITM head learns of it (`FinetuneStep`)
                ex.label = None if r.box is None else best_region(table, row, r.box)
            elif task == "vqa":
                ex.answers = r.answers
            examples.append(ex)
    return examples


@dataclass(frozen=True)
class Masking:
    """Pre-training corruption settings."""

    swap_fraction: float = 0.5  # share of one-to-one anchors swapped (at least one when any)
    false_swap: float = 0.2  # share of swaps filled from a non-matching slot
    mlm_probability: float = 0.15  # non-anchor tokens masked for MLM
    focus_probability: float = 0.15  # MLM probability of the tokens in ``focus_ids`` instead
    focus_ids: frozenset[int] = frozenset()


class Swap(NamedTuple):
    """One anchor swap: text slot ``token`` and region slot ``region`` trade places (CMAP)."""

    token: int  # the text slot
    region: int  # the region slot
    concept: int  # the anchor's concept: the AMC label at both slots
    text_source: int  # the region whose feature fills the text slot (= region, or another for a false swap)
    region_source: int  # the token whose embedding fills the region slot (= token, or another)


def _swaps(ex: Example, table: RegionTable, rng: np.random.Generator, m: Masking) -> list[Swap]:
    """The chosen pre-training swaps of one example (some of them false)."""
    if not ex.anchors:
        return []
    shuffled = [ex.anchors[int(i)] for i in rng.permutation(len(ex.anchors))]
    pairs = one_to_one(shuffled)
    n = max(1, round(m.swap_fraction * len(pairs)))
    chosen = [pairs[int(i)] for i in rng.permutation(len(pairs))[:n]]
    anchored_concept = {a.token: a.concept for a in ex.anchors}
    region_concept = table.tags[ex.row]  # detector tag ids = concept ids (same vocabulary)
    out = []
    for a in chosen:
        t_src, r_src = a.region, a.token
        if rng.random() < m.false_swap:
            other_regions = [
                k for k in np.flatnonzero(table.valid[ex.row]) if int(region_concept[k]) != a.concept
            ]
            other_tokens = [
                j
                for j in range(1, len(ex.ids) - 1)
                if ex.ids[j] != SEP_ID and anchored_concept.get(j, -2) != a.concept
            ]
            if other_regions and other_tokens:
                t_src = int(other_regions[int(rng.integers(len(other_regions)))])
                r_src = int(other_tokens[int(rng.integers(len(other_tokens)))])
        out.append(Swap(a.token, a.region, a.concept, t_src, r_src))
    return out


def collate(
    batch: Sequence[Example],
    table: RegionTable,
    *,
    pretrain: bool,
    seed: int = 0,
    epoch: int = 0,
    masking: Masking = Masking(),
    num_answers: int = 0,
    answer_ids: Mapping[str, int] | None = None,
    vocab_size: int = 0,
) -> dict[str, torch.Tensor]:
    """Tensors for one batch.

    Pre-training: random anchor swaps (some false), AMC labels at both swapped slots, MLM masks on
    non-anchor tokens of captions (ITM pairs are never masked). Otherwise (fine-tuning,
    evaluation): every one-to-one anchor swapped with its true partner, no corruption.
    """
    b = len(batch)
    ids, mask = pad_ids([ex.ids for ex in batch])
    length = ids.shape[1]
    rows = np.array([ex.row for ex in batch])
    swaps: list[list[Swap]] = []
    mlm_labels = np.zeros_like(ids)
    mlm_valid = np.zeros(ids.shape, bool)
    for i, ex in enumerate(batch):
        if pretrain:
            rng = np.random.default_rng([seed, epoch, ex.uid])
            swaps.append(_swaps(ex, table, rng, masking))
            # MLM corrupts captions only: ITM pairs stay intact, so the presence of [MASK] can never
            # tell a matching pair from a non-matching one
            if ex.task == "captions":
                anchored = {a.token for a in ex.anchors}
                for j in range(1, len(ex.ids) - 1):
                    if j in anchored:
                        continue
                    focus = int(ids[i, j]) in masking.focus_ids
                    if rng.random() >= (masking.focus_probability if focus else masking.mlm_probability):
                        continue
                    mlm_labels[i, j] = ids[i, j]
                    mlm_valid[i, j] = True
                    r = rng.random()
                    if r < 0.8:
                        ids[i, j] = MASK_ID
                    elif r < 0.9:
                        ids[i, j] = int(rng.integers(5, vocab_size))
        else:
            true_pairs = one_to_one(ex.anchors)
            swaps.append([Swap(a.token, a.region, a.concept, a.region, a.token) for a in true_pairs])
    s = max([1, *(len(x) for x in swaps)])
    table_of_swaps = np.zeros((b, s, len(Swap._fields)), np.int64)
    sw_valid = np.zeros((b, s), bool)
    for i, x in enumerate(swaps):
        if x:
            table_of_swaps[i, : len(x)] = x
            sw_valid[i, : len(x)] = True
    sw = Swap(*np.moveaxis(table_of_swaps, -1, 0))  # each field (B, S)
    out = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "region_boxes": torch.from_numpy(table.boxes[rows]),
        "region_features": torch.from_numpy(table.features[rows]),
        "region_valid": torch.from_numpy(table.valid[rows]),
        "swap_token": torch.from_numpy(sw.token),
        "swap_region": torch.from_numpy(sw.region),
        "swap_valid": torch.from_numpy(sw_valid),
        "text_source": torch.from_numpy(sw.text_source),
        "region_source": torch.from_numpy(sw.region_source),
        "task": torch.tensor([KIND_INDEX[ex.task] for ex in batch]),
        "image_row": torch.from_numpy(rows),
        "match": torch.tensor([ex.match for ex in batch], dtype=torch.float32),
        "label": torch.tensor([NO_LABEL if ex.label is None else ex.label for ex in batch]),
    }
    if pretrain:
        # AMC at both slots of every swap: text slot j, region slot L + k; label = anchor concept
        out["amc_positions"] = torch.from_numpy(np.concatenate([sw.token, length + sw.region], axis=1))
        out["amc_labels"] = torch.from_numpy(np.concatenate([sw.concept, sw.concept], axis=1))
        out["amc_valid"] = torch.from_numpy(np.concatenate([sw_valid, sw_valid], axis=1))
        out["mlm_labels"] = torch.from_numpy(mlm_labels)
        out["mlm_valid"] = torch.from_numpy(mlm_valid)
    if num_answers:
        soft = np.zeros((b, num_answers), np.float32)
        for i, ex in enumerate(batch):
            for a, v in soft_scores(ex.answers, answer_ids or {}).items():
                soft[i, a] = v
        out["vqa_soft"] = torch.from_numpy(soft)
    return out


def split_off(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(training, held-out) examples: a random ``fraction`` held out, drawn with ``seed``."""
    n_val = max(1, int(len(examples) * fraction))
    order = np.random.default_rng(seed).permutation(len(examples))
    val = {int(i) for i in order[:n_val]}
    return [e for i, e in enumerate(examples) if i not in val], [
        e for i, e in enumerate(examples) if i in val
    ]


def share_of_images(examples: list[Example], share: float, seed: int) -> list[Example]:
    """The examples of a seeded random ``share`` of their images (at least one image; 1: all)."""
    if share >= 1.0:
        return examples
    rows = sorted({e.row for e in examples})
    drawn = np.random.default_rng(seed).permutation(len(rows))[: max(1, round(share * len(rows)))]
    keep = {rows[int(i)] for i in drawn}
    return [e for e in examples if e.row in keep]


def cap_per_task(examples: Sequence[Example], per_task: int = VAL_CAP) -> list[Example]:
    """The first ``per_task`` examples of each task (validation stays short)."""
    seen: dict[str, int] = {}
    out = []
    for e in examples:
        if seen.get(e.task, 0) < per_task:
            out.append(e)
            seen[e.task] = seen.get(e.task, 0) + 1
    return out
