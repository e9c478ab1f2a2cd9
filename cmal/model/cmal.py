"""The CMAL model: UMSE encoders, CMAP layer, unified encoder and every head.

``forward`` is the inference/export signature: tensors in, every task head's output out, so one
pass serves requests of different tasks in one batch. Training wrappers call `CMAL.encode` with
their own swap sources (false swaps) and apply the pre-training heads.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cmal.model.cmap import CMAP
from cmal.model.config import CMALConfig
from cmal.model.heads import ClsHead, GroundingHead, SlotHead
from cmal.model.umse import GEOMETRY_WIDTH, TextEncoder, VisualEncoder, geometry_features
from cmal.model.use import UnifiedEncoder


class Encoded(NamedTuple):
    """What `CMAL.encode` returns: the unified sequence, the uni-modal states before CMAP, and
    which slots CMAP filled.
    """

    sequence: torch.Tensor  # (B, L + K, H) unified encoder output
    text: torch.Tensor  # (B, L, U) ĥ^t before CMAP
    regions: torch.Tensor  # (B, K, U) ĥ^v before CMAP
    text_swapped: torch.Tensor  # (B, L)
    region_swapped: torch.Tensor  # (B, K)


class TaskOutputs(NamedTuple):
    """Every task head's logits for a batch, in the fusion graph's output order."""

    ve_logits: torch.Tensor  # (B, 3) entailment, neutral, contradiction
    itm_logits: torch.Tensor  # (B,) match logit
    vqa_logits: torch.Tensor  # (B, A)
    rec_logits: torch.Tensor  # (B, K), -1e4 at invalid slots


class CMAL(nn.Module):
    """The whole model: UMSE encoders, CMAP layer, unified encoder, and the task and pre-training heads."""

    def __init__(self, config: CMALConfig):
        super().__init__()
        self.config = config
        self.text_encoder = TextEncoder(config)
        self.visual_encoder = VisualEncoder(config)
        self.cmap = CMAP(config.umse_hidden)
        # the box embedding CMAP adds to filled slots (config.slot_geometry)
        self.slot_geometry = (
            nn.Sequential(nn.Linear(GEOMETRY_WIDTH, config.umse_hidden), nn.LayerNorm(config.umse_hidden))
            if config.slot_geometry
            else None
        )
        # the markers tying each anchor pair's two slots (config.anchor_markers): at most one pair
        # per region slot
        self.anchor_markers = (
            nn.Embedding(config.max_regions, config.umse_hidden) if config.anchor_markers else None
        )
        self.use = UnifiedEncoder(config)
        self.ve_head = ClsHead(config, 3)
        self.itm_head = ClsHead(config, 1)
        self.vqa_head = ClsHead(config, config.num_answers)
        self.rec_head = GroundingHead(config)
        self.mlm_head = SlotHead(config, config.vocab_size)
        self.amc_head = SlotHead(config, config.num_concepts)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        region_boxes: torch.Tensor,
        region_features: torch.Tensor,
        region_valid: torch.Tensor,
        swap_token: torch.Tensor,
        swap_region: torch.Tensor,
        swap_valid: torch.Tensor,
        text_source: torch.Tensor | None = None,
        region_source: torch.Tensor | None = None,
        mode: str | None = None,
    ) -> Encoded:
        """Run UMSE, CMAP and the unified encoder.

        Args:
            input_ids, attention_mask: (B, L) WordPiece ids with [CLS]/[SEP], and their mask.
            region_boxes (B, K, 4), region_features (B, K, D), region_valid (B, K): detector output.
            swap_token, swap_region, swap_valid: (B, S) the anchor pairs to swap (one-to-one).
            text_source, region_source: (B, S) fill sources; default to the partners (true swaps).
            mode: CMAP mode; defaults to ``config.cmap_mode``.
        """
        ht = self.text_encoder(input_ids, attention_mask)
        hv = self.visual_encoder(region_boxes, region_features, region_valid)
        prompt = self.cmap(
            ht,
            hv,
            swap_token,
            swap_region,
            swap_valid,
            swap_region if text_source is None else text_source,
            swap_token if region_source is None else region_source,
            mode or self.config.cmap_mode,
            None if self.slot_geometry is None else self.slot_geometry(geometry_features(region_boxes)),
            None if self.anchor_markers is None else self.anchor_markers.weight,
        )
        sequence = self.use(
            prompt.text,
            prompt.regions,
            attention_mask,
            region_valid,
            prompt.text_swapped,
            prompt.region_swapped,
        )
        return Encoded(sequence, ht, hv, prompt.text_swapped, prompt.region_swapped)

    def tasks(self, sequence: torch.Tensor, region_valid: torch.Tensor) -> TaskOutputs:
        """Every task head on the unified output."""
        length = sequence.shape[1] - region_valid.shape[1]
        return TaskOutputs(
            self.ve_head(sequence),
            self.itm_head(sequence).squeeze(-1),
            self.vqa_head(sequence),
            self.rec_head(sequence[:, length:], region_valid),
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        region_boxes: torch.Tensor,
        region_features: torch.Tensor,
        region_valid: torch.Tensor,
        anchor_token: torch.Tensor,
        anchor_region: torch.Tensor,
        anchor_valid: torch.Tensor,
    ) -> TaskOutputs:
        """Inference: all anchors (one-to-one) swapped per ``config.cmap_mode``; every head's logits."""
        encoded = self.encode(
            input_ids,
            attention_mask,
            region_boxes,
            region_features,
            region_valid,
            anchor_token,
            anchor_region,
            anchor_valid,
        )
        return self.tasks(encoded.sequence, region_valid)
