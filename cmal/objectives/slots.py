"""Slot classification objectives: masked language modelling and associative mapping classification."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over valid slots; zero (with a graph) when there are none.

    logits (B, S, C), labels (B, S), valid (B, S) bool.
    """
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid], labels[valid])


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MLM: recover the original token at masked non-anchor positions."""
    return masked_cross_entropy(logits, labels, valid)


def amc_loss(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """AMC: at every swapped slot, classify the concept that originally stood there."""
    return masked_cross_entropy(logits, labels, valid)


def concept_terms(
    head: nn.Module, sequence: torch.Tensor, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy, slot count) of the fine-tuning concept loss on one unified output.

    ``head`` (the AMC head: sequence (B, N, H), positions (B, S) -> (B, S, C)) names the anchor's
    concept ``batch["swap_concept"]`` at every swapped word slot ``batch["swap_token"]`` (valid where
    ``batch["swap_valid"]``): the word whose slot now holds its region's feature. A sum and a count,
    so sub-batches of different lengths add up to one mean.
    """
    logits = head(sequence, batch["swap_token"])
    valid = batch["swap_valid"].bool()
    if not bool(valid.any()):
        return logits.sum() * 0.0, 0
    return F.cross_entropy(logits[valid], batch["swap_concept"][valid], reduction="sum"), int(valid.sum())


def slot_accuracy(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> tuple[int, int]:
    """(correct, total) over valid slots."""
    if not bool(valid.any()):
        return 0, 0
    return int((logits[valid].argmax(-1) == labels[valid]).sum()), int(valid.sum())
