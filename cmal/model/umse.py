"""Uni-modal semantic encoding (UMSE): text and regions embedded in two separate hypersphere spaces."""

from __future__ import annotations

import torch
from torch import nn

from cmal.model.blocks import Encoder, Hypersphere
from cmal.model.config import CMALConfig

GEO_FREQUENCIES = 6  # Fourier features per geometry value: sin/cos of 2^k·π·v, k < 6
GEOMETRY_WIDTH = 7 * (1 + 2 * GEO_FREQUENCIES)  # width of `geometry_features`


def box_geometry(boxes: torch.Tensor) -> torch.Tensor:
    """geo(b): (…, 4) normalised x1, y1, x2, y2 -> (…, 7) with width, height and area."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return torch.cat([boxes, w[..., None], h[..., None], (w * h)[..., None]], dim=-1)


def geometry_features(boxes: torch.Tensor) -> torch.Tensor:
    """geo(b) and its Fourier features: (…, 4) -> (…, 7 + 7·2·GEO_FREQUENCIES).

    A linear map of the raw box barely separates "left of" from "right of" or small from large
    after the LayerNorm; sines and cosines of the coordinates at several frequencies make position
    and size linearly readable.
    """
    geo = box_geometry(boxes)  # (…, 7)
    scales = (2.0 ** torch.arange(GEO_FREQUENCIES, device=boxes.device, dtype=boxes.dtype)) * torch.pi
    angles = (geo.unsqueeze(-1) * scales).flatten(-2)  # (…, 7·F)
    return torch.cat([geo, angles.sin(), angles.cos()], dim=-1)


class TextEncoder(nn.Module):
    """Token + position embeddings -> small transformer -> ĥ^t on the text hypersphere."""

    def __init__(self, c: CMALConfig):
        super().__init__()
        self.tokens = nn.Embedding(c.vocab_size, c.umse_hidden)
        self.positions = nn.Embedding(c.max_tokens, c.umse_hidden)
        self.ln = nn.LayerNorm(c.umse_hidden)
        self.encoder = Encoder(c.umse_hidden, c.umse_layers, c.umse_heads, c.intermediate, c.dropout)
        self.sphere = Hypersphere(c.umse_hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: (B, L) -> (B, L, U)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.ln(self.tokens(input_ids) + self.positions(positions)[None])
        result: torch.Tensor = self.sphere(self.encoder(x, attention_mask.bool()))
        return result


class VisualEncoder(nn.Module):
    """``x_k = LN(W_f f_k) + LN(W_b geo(b_k))`` -> small transformer -> ĥ^v on the visual hypersphere.

    ``geo`` here is the box, width, height and area with their Fourier features (see
    `geometry_features`).
    """

    def __init__(self, c: CMALConfig):
        super().__init__()
        self.feature = nn.Sequential(
            nn.Linear(c.region_feature_dim, c.umse_hidden), nn.LayerNorm(c.umse_hidden)
        )
        self.geometry = nn.Sequential(nn.Linear(GEOMETRY_WIDTH, c.umse_hidden), nn.LayerNorm(c.umse_hidden))
        self.encoder = Encoder(c.umse_hidden, c.umse_layers, c.umse_heads, c.intermediate, c.dropout)
        self.sphere = Hypersphere(c.umse_hidden)

    def forward(self, boxes: torch.Tensor, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """boxes (B, K, 4), features (B, K, D), valid (B, K) -> (B, K, U)."""
        x = self.feature(features) + self.geometry(geometry_features(boxes))
        # an image with no valid region still needs one key to attend to: let slot 0 always attend
        mask = valid.bool() | (torch.arange(valid.shape[1], device=valid.device) == 0)[None]
        result: torch.Tensor = self.sphere(self.encoder(x, mask))
        return result
