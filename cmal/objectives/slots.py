"""Slot classification objectives: masked language modelling and associative mapping classification."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def slot_accuracy(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> tuple[int, int]:
    """(correct, total) over valid slots."""
    if not bool(valid.any()):
        return 0, 0
    return int((logits[valid].argmax(-1) == labels[valid]).sum()), int(valid.sum())
