"""Task heads on the unified encoder's output (one small module each)."""

from __future__ import annotations

import torch
from torch import nn

from cmal.model.blocks import MLP
from cmal.model.config import CMALConfig


class ClsHead(nn.Module):
    """A classifier on ``[CLS]``: entailment (3), ITM (1) or VQA (answer vocabulary)."""

    def __init__(self, c: CMALConfig, classes: int):
        super().__init__()
        self.mlp = MLP(c.hidden, classes)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """sequence (B, N, H) -> logits (B, classes), read at ``[CLS]`` (position 0)."""
        result: torch.Tensor = self.mlp(sequence[:, 0])  # (B, classes)
        return result


class GroundingHead(nn.Module):
    """A score per region slot; invalid slots get -1e4 so a softmax over slots ignores them.

    Grounding is a softmax over slots, so the scorer has no output bias (it would shift every slot
    alike and never learn); `RETIRED_KEYS` lists that bias for checkpoints written before.
    """

    RETIRED_KEYS = (f"rec_head.mlp.{MLP.OUTPUT}.bias",)

    def __init__(self, c: CMALConfig):
        super().__init__()
        self.mlp = MLP(c.hidden, 1, out_bias=False)

    def forward(self, regions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """regions (B, K, H), valid (B, K) -> logits (B, K)."""
        result: torch.Tensor = self.mlp(regions).squeeze(-1).masked_fill(~valid.bool(), -1e4)
        return result


class SlotHead(nn.Module):
    """A classifier applied at chosen sequence positions: MLM (vocabulary) and AMC (concepts)."""

    def __init__(self, c: CMALConfig, classes: int):
        super().__init__()
        self.mlp = MLP(c.hidden, classes)

    def forward(self, sequence: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """sequence (B, N, H), positions (B, S) -> logits (B, S, classes)."""
        picked = sequence.gather(1, positions.unsqueeze(-1).expand(-1, -1, sequence.shape[-1]))
        result: torch.Tensor = self.mlp(picked)
        return result
