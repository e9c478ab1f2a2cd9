"""Detector objectives: pure functions of dense maps and targets, returning named losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cmal.detector.model import DenseMaps
from cmal.detector.targets import Targets


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor, num_objects: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), per object."""
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / num_objects.clamp(min=1)


def _at(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) gathered at (B, M) flat indices -> (B, M, C)."""
    flat = maps.flatten(2)
    return flat.gather(2, index.unsqueeze(1).expand(-1, flat.shape[1], -1)).transpose(1, 2)


def labelled_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the objects whose class is known (target >= 0); zero when none is."""
    known = target >= 0
    if not bool(known.any()):
        return logits.new_zeros(())
    return F.cross_entropy(logits[known], target[known])


def detector_losses(maps: DenseMaps, t: Targets) -> dict[str, torch.Tensor]:
    """All detector losses; ``total`` is their weighted sum."""
    n = t.mask.sum()
    mask = t.mask
    heat = focal_heatmap_loss(maps.heat, t.heat, n)
    size = F.l1_loss(_at(maps.size, t.centre)[mask], t.size[mask], reduction="sum") / n.clamp(min=1)
    offset = F.l1_loss(_at(maps.offset, t.centre)[mask], t.offset[mask], reduction="sum") / n.clamp(min=1)
    tag = labelled_cross_entropy(_at(maps.tag_logits, t.centre)[mask], t.tag[mask])
    attribute = labelled_cross_entropy(_at(maps.attribute_logits, t.centre)[mask], t.attribute[mask])
    total = heat + 0.2 * size + offset + tag + attribute
    return {"total": total, "heat": heat, "size": size, "offset": offset, "tag": tag, "attribute": attribute}
