"""Training steps as modules (so DistributedDataParallel wraps the whole computation).

Each step's ``forward(batch)`` returns named losses with ``total`` first; the objectives themselves
are the pure functions of `cmal.objectives`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cmal.model.cmal import CMAL, Encoded, TaskOutputs
from cmal.objectives.contrastive import cmcl_loss, pooled
from cmal.objectives.slots import amc_loss, mlm_loss
from cmal.objectives.tasks import itm_loss, rec_loss, ve_loss, vqa_loss
from cmal.train.examples import KIND_INDEX
from cmal.train.lengths import length_groups, merge, rows_of


def encode_batch(model: CMAL, batch: dict[str, torch.Tensor], mode: str | None = None) -> Encoded:
    """Run `CMAL.encode` on a collated batch (with its swap sources)."""
    return model.encode(
        batch["input_ids"],
        batch["attention_mask"],
        batch["region_boxes"],
        batch["region_features"],
        batch["region_valid"],
        batch["swap_token"],
        batch["swap_region"],
        batch["swap_valid"],
        text_source=batch["text_source"],
        region_source=batch["region_source"],
        mode=mode,
    )


class PretrainStep(nn.Module):
    """MLM + ITM + λ·AMC (or the contrastive CMCL in place of AMC).

    ``plain_pass``: MLM and ITM read a second, unswapped pass of the same batch, so a masked word
    must be recovered through cross-modal attention rather than from a swapped slot next to it;
    AMC keeps the swapped pass.
    """

    def __init__(self, model: CMAL, amc_weight: float = 1.0, plain_pass: bool = False):
        super().__init__()
        self.model = model
        self.amc_weight = amc_weight
        self.plain_pass = plain_pass

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Collated batch -> scalar losses ``total``, ``mlm``, ``itm`` and ``amc`` (or ``cmcl``)."""
        m = self.model
        contrastive = m.config.objective == "cmcl"
        enc = encode_batch(m, batch, mode="off" if contrastive else "swap")
        seq = enc.sequence
        if self.plain_pass and not contrastive:
            seq = encode_batch(m, batch, mode="off").sequence
        length = batch["input_ids"].shape[1]
        positions = torch.arange(length, device=seq.device).expand(seq.shape[0], length)
        losses = {
            "mlm": mlm_loss(m.mlm_head(seq, positions), batch["mlm_labels"], batch["mlm_valid"]),
            "itm": itm_loss(m.itm_head(seq).squeeze(-1), batch["match"], batch["task"] == KIND_INDEX["itm"]),
        }
        if contrastive:
            itm_pairs = batch["task"] == KIND_INDEX["itm"]
            positive = (batch["task"] == KIND_INDEX["captions"]) | (itm_pairs & (batch["match"] == 1.0))
            losses["cmcl"] = cmcl_loss(
                pooled(enc.text, batch["attention_mask"]),
                pooled(enc.regions, batch["region_valid"]),
                positive,
                batch["image_row"],
            )
            align = losses["cmcl"]
        else:
            logits = m.amc_head(enc.sequence, batch["amc_positions"])
            losses["amc"] = amc_loss(logits, batch["amc_labels"], batch["amc_valid"])
            align = losses["amc"]
        return {"total": losses["mlm"] + losses["itm"] + self.amc_weight * align, **losses}


def check_ve_trains_itm(tasks: Sequence[str], ve_trains_itm: bool) -> None:
    """Raise ValueError when VE is to train the ITM head but the two are not both fine-tuned."""
    if ve_trains_itm and not {"ve", "itm"} <= set(tasks):
        raise ValueError(
            f"VE trains the ITM head (--ve-trains-itm) only when both are fine-tuned, not {', '.join(tasks)}"
        )


class FinetuneStep(nn.Module):
    """Sum of the task losses present in the (mixed-task) batch.

    When both grounding and ITM are trained, grounding expressions are ITM examples too: one that
    names an object matches its image, one that names nothing does not. Grounding declines on the
    ITM logit of its expression (`cmal.tasks.declines`), so this trains that decision on the very
    near-misses it must reject. With ``ve_trains_itm``, entailed and contradicted hypotheses are ITM
    matches and non-matches too (neutral ones are not): more hard negatives such as a relation
    stated the wrong way round.

    ``length_groups`` > 1 runs the batch as up to that many sub-batches of similar text length
    (`cmal.train.lengths`): less padding to pay for, the same logits and so the same losses.
    """

    def __init__(
        self, model: CMAL, tasks: tuple[str, ...], ve_trains_itm: bool = False, length_groups: int = 1
    ):
        super().__init__()
        self.model = model
        self.tasks = tasks
        check_ve_trains_itm(tasks, ve_trains_itm)
        self.ve_trains_itm = ve_trains_itm
        self.length_groups = length_groups

    def outputs(self, batch: dict[str, torch.Tensor]) -> TaskOutputs:
        """Every task head's logits for the batch's rows, in the batch's order."""
        m = self.model
        if self.length_groups <= 1:
            return m.tasks(encode_batch(m, batch).sequence, batch["region_valid"])
        groups = length_groups(batch["attention_mask"].sum(1), self.length_groups)
        parts = []
        for rows in groups:
            part = rows_of(batch, rows)
            parts.append(m.tasks(encode_batch(m, part).sequence, part["region_valid"]))
        return merge(parts, groups)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Collated batch -> scalar losses ``total`` and one per fine-tuned task (``ve``, ``itm``,
        ``vqa``, ``rec``).
        """
        out = self.outputs(batch)
        task = batch["task"]
        losses: dict[str, torch.Tensor] = {}
        if "ve" in self.tasks:
            losses["ve"] = ve_loss(out.ve_logits, batch["label"], task == KIND_INDEX["ve"])
        if "itm" in self.tasks:
            itm_examples = task == KIND_INDEX["itm"]
            if "rec" in self.tasks:
                itm_examples = itm_examples | (task == KIND_INDEX["rec"])
            if self.ve_trains_itm:
                itm_examples = itm_examples | ((task == KIND_INDEX["ve"]) & (batch["match"] >= 0))
            losses["itm"] = itm_loss(out.itm_logits, batch["match"], itm_examples)
        if "vqa" in self.tasks:
            losses["vqa"] = vqa_loss(out.vqa_logits, batch["vqa_soft"], task == KIND_INDEX["vqa"])
        if "rec" in self.tasks:
            losses["rec"] = rec_loss(
                out.rec_logits,
                batch["label"].clamp(min=0),
                (task == KIND_INDEX["rec"]) & (batch["label"] >= 0),
            )
        return {"total": sum(losses.values(), torch.zeros(())), **losses}


@torch.no_grad()
def geometry_word_hits(
    step: PretrainStep, batch: dict[str, torch.Tensor], concepts: dict[int, str]
) -> dict[str, tuple[int, int]]:
    """(right, total) per kind ("size", "relation", "superlative") of masked geometry words.

    ``concepts`` maps token ids to meanings (`GEOMETRY_CONCEPTS`); a prediction, taken over the
    geometry words only, is right when it means the same ("tiny" for "small"). Reads the pass that
    MLM trains on. These words are told apart only by box geometry, so this measures whether
    pre-training has learned to read it: language alone gets about half right.
    """
    m = step.model
    plain = step.plain_pass or m.config.objective == "cmcl"
    seq = encode_batch(m, batch, mode="off" if plain else "swap").sequence
    length = batch["input_ids"].shape[1]
    positions = torch.arange(length, device=seq.device).expand(seq.shape[0], length)
    valid = batch["mlm_valid"]
    ids = torch.tensor(sorted(concepts), device=seq.device)
    predicted = ids[m.mlm_head(seq, positions)[valid][:, ids].argmax(-1)]
    out: dict[str, tuple[int, int]] = {}
    for label, guess in zip(batch["mlm_labels"][valid].tolist(), predicted.tolist(), strict=True):
        kind = concepts[label].split(":")[0]
        right, total = out.get(kind, (0, 0))
        out[kind] = (right + (concepts[label] == concepts[guess]), total + 1)
    return out
