"""CMCL, the contrastive alternative to AMC (for ablations): InfoNCE between pooled uni-modal embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pooled(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid slots, then unit-normalised. x (B, N, U), mask (B, N) -> (B, U)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return F.normalize((x * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)


def cmcl_loss(
    text: torch.Tensor,
    image: torch.Tensor,
    positive: torch.Tensor,
    image_id: torch.Tensor,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE over the matching pairs of a batch.

    Several texts of one image may share a batch: every pair with the same ``image_id`` counts as a
    positive (the loss is -log of the softmax mass on the positives).

    Args:
        text, image: (B, U) unit vectors.
        positive: (B,) bool: the pair is a true match (only those rows take part).
        image_id: (B,) which image each row shows.
        temperature: softmax temperature.
    """
    idx = positive.nonzero().squeeze(-1)
    if idx.numel() < 2:
        return text.sum() * 0.0
    t, v, ids = text[idx], image[idx], image_id[idx]
    logits = t @ v.T / temperature  # (P, P)
    same = ids[:, None] == ids[None, :]
    neg_inf = torch.finfo(logits.dtype).min

    def side(x: torch.Tensor) -> torch.Tensor:
        return (torch.logsumexp(x, -1) - torch.logsumexp(x.masked_fill(~same, neg_inf), -1)).mean()

    return (side(logits) + side(logits.T)) / 2
