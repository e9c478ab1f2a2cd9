"""Task losses for fine-tuning (and ITM for pre-training). Each ignores examples of other tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _none(logits: torch.Tensor) -> torch.Tensor:
    return logits.sum() * 0.0


def itm_loss(logits: torch.Tensor, match: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy; logits (B,), match (B,) float, valid (B,) bool."""
    if not bool(valid.any()):
        return _none(logits)
    return F.binary_cross_entropy_with_logits(logits[valid], match[valid])


def ve_loss(logits: torch.Tensor, label: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """3-way cross-entropy; logits (B, 3), label (B,)."""
    if not bool(valid.any()):
        return _none(logits)
    return F.cross_entropy(logits[valid], label[valid])


def vqa_loss(logits: torch.Tensor, soft: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Soft-score binary cross-entropy over the answer vocabulary (VQA style), scaled by A."""
    if not bool(valid.any()):
        return _none(logits)
    return F.binary_cross_entropy_with_logits(logits[valid], soft[valid]) * logits.shape[-1]


def rec_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the target region slot under a softmax over valid slots; logits (B, K)."""
    if not bool(valid.any()):
        return _none(logits)
    return F.cross_entropy(logits[valid], target[valid])
