"""The detector network and its decoding, all in tensors so the whole forward exports as one graph.

Backbone: a small CNN down to stride 16, then a top-down path back to stride 4 (FPN-like), so the
stride-4 cells see whole objects. Heads on the stride-4 map: centre heatmap (1 channel,
class-agnostic), box size and sub-cell offset, and a region feature from which the tag and
attribute classifiers read. Decoding: 3x3 max-pool peak picking, top-K, gather — no NMS op and no
Python loop over detections.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cmal.detector.config import DetectorConfig


class DetectorOutput(NamedTuple):
    """The detector's output contract: K region slots per image; features are zero where not ``valid``."""

    boxes: torch.Tensor  # (B, K, 4) normalised x1, y1, x2, y2
    scores: torch.Tensor  # (B, K)
    tags: torch.Tensor  # (B, K) int64
    attributes: torch.Tensor  # (B, K) int64
    features: torch.Tensor  # (B, K, D)
    valid: torch.Tensor  # (B, K) bool


class DenseMaps(NamedTuple):
    """Per-cell predictions on the stride-s grid (what training losses read)."""

    heat: torch.Tensor  # (B, 1, h, w) logits
    size: torch.Tensor  # (B, 2, h, w) box width, height in cells
    offset: torch.Tensor  # (B, 2, h, w) centre offset within the cell, in cells
    features: torch.Tensor  # (B, D, h, w)
    tag_logits: torch.Tensor  # (B, T, h, w)
    attribute_logits: torch.Tensor  # (B, A, h, w)


def gather_cells(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The cells ``index`` (B, K) of flat positions picks from ``maps`` (B, C, h, w), as (B, K, C)."""
    flat = maps.flatten(2)  # (B, C, h*w)
    return flat.gather(2, index.unsqueeze(1).expand(-1, flat.shape[1], -1)).transpose(1, 2)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias), BatchNorm and ReLU; ``stride`` 2 halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Detector(nn.Module):
    """CenterNet-style detector; ``forward`` returns the fixed output contract."""

    # ImageNet-style normalisation is done inside the graph, so callers feed [0, 1] pixels.
    MEAN = (0.5, 0.5, 0.5)
    STD = (0.25, 0.25, 0.25)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: DetectorConfig):
        super().__init__()
        if config.stride != 4 or len(config.widths) != 4:
            raise ValueError("this detector has four stages (strides 2, 4, 8, 16) and output stride 4")
        self.config = config
        w2, w4, w8, w16 = config.widths
        self.stage2 = conv_bn(3, w2, 2)
        self.stage4 = nn.Sequential(conv_bn(w2, w4, 2), conv_bn(w4, w4))
        self.stage8 = nn.Sequential(conv_bn(w4, w8, 2), conv_bn(w8, w8))
        self.stage16 = nn.Sequential(conv_bn(w8, w16, 2), conv_bn(w16, w16))
        n = config.neck_width
        self.lateral16 = nn.Conv2d(w16, n, 1)
        self.lateral8 = nn.Conv2d(w8, n, 1)
        self.lateral4 = nn.Conv2d(w4, n, 1)
        self.smooth8 = conv_bn(n, n)
        self.smooth4 = conv_bn(n, n)
        self.head = conv_bn(n, n)
        self.heat = nn.Conv2d(n, 1, 1)
        self.box = nn.Conv2d(n, 4, 1)  # width, height, offset x, offset y
        c = config.colour_channels
        if not 0 <= c < config.feature_dim:
            raise ValueError(f"colour_channels must be in [0, feature_dim={config.feature_dim}), got {c}")
        shape_dim = config.feature_dim - c
        self.feature = nn.Sequential(nn.Conv2d(n, shape_dim, 1), nn.ReLU(inplace=True))
        self.colour: nn.Sequential | None = None  # per-pixel layers only: colour without outline
        if c:
            self.colour = nn.Sequential(
                nn.Conv2d(3, c, 1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1), nn.ReLU(inplace=True)
            )
        self.tag_head = nn.Linear(shape_dim, config.num_tags)
        self.attribute_head = nn.Linear(c or config.feature_dim, config.num_attributes)
        with torch.no_grad():
            self.heat.bias.fill_(-2.19)  # type: ignore[union-attr]  # prior 0.1: stable focal loss at start
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    def dense(self, images: torch.Tensor) -> DenseMaps:
        """Per-cell maps. images: (B, 3, H, W) in [0, 1]."""
        x = (images - self.mean) / self.std
        c2 = self.stage2(self.backbone_input(x))
        c4 = self.stage4(c2)  # (B, w4, H/4, W/4)
        c8 = self.stage8(c4)
        c16 = self.stage16(c8)
        p8 = self.smooth8(self.lateral8(c8) + F.interpolate(self.lateral16(c16), scale_factor=2.0))
        p4 = self.smooth4(self.lateral4(c4) + F.interpolate(p8, scale_factor=2.0))
        h = self.head(p4)  # (B, n, h, w)
        box = self.box(h)
        shape = self.feature(h)  # (B, D - c, h, w)
        if self.colour is None:
            features, colour = shape, shape
        else:
            colour = self.pooled_colour(x)  # (B, c, h, w)
            features = torch.cat([shape, colour], dim=1)
        return DenseMaps(
            heat=self.heat(h),
            size=box[:, 0:2],
            offset=box[:, 2:4],
            features=features,
            tag_logits=self.tag_head(shape.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
            attribute_logits=self.attribute_head(colour.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
        )

    def backbone_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the CNN path sees of a normalised image (B, 3, H, W): the image; its grey (the channel
        mean); or, with ``contrast_backbone``, each pixel's distance from the image's mean colour."""
        if self.config.grey_backbone:
            return x.mean(1, keepdim=True).expand_as(x)
        if self.config.contrast_backbone:
            away = x - x.mean(dim=(2, 3), keepdim=True)
            return (away.square().sum(1, keepdim=True) + 1e-6).sqrt().expand_as(x)
        return x

    def pooled_colour(self, x: torch.Tensor) -> torch.Tensor:
        """The colour path on a normalised image: per-pixel features, max-pooled over each output
        cell and its neighbours, ``colour_window`` cells a side (an object's colour, whatever its
        outline). (B, c, h, w)."""
        assert self.colour is not None
        s, window = self.config.stride, self.config.colour_window
        per_cell = F.max_pool2d(self.colour(x), s, stride=s)
        return F.max_pool2d(per_cell, window, stride=1, padding=window // 2)

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        """images: (B, 3, H, W) float in [0, 1] -> the output contract (see the package docs)."""
        return self.decode(self.dense(images), images.shape[-1], images.shape[-2])

    def peaks(self, maps: DenseMaps) -> tuple[torch.Tensor, torch.Tensor]:
        """3x3 max-pool peak picking and top-K: each slot's score and flat cell index, both (B, K)."""
        heat = torch.sigmoid(maps.heat)  # (B, 1, h, w)
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
        scores, index = peaks.flatten(1).topk(self.config.max_detections, dim=1)
        return scores, index

    def decode(self, maps: DenseMaps, width: int, height: int) -> DetectorOutput:
        """Peak picking and top-K on dense maps; shapes follow the output contract."""
        scores, index = self.peaks(maps)
        heat = maps.heat
        w = heat.shape[-1]
        ys = torch.div(index, w, rounding_mode="floor").to(heat.dtype)
        xs = (index % w).to(heat.dtype)

        def gather(m: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, K, C)
            return gather_cells(m, index)

        size = gather(maps.size)  # (B, K, 2) in cells
        offset = gather(maps.offset)
        cx = (xs + offset[..., 0]) * self.config.stride
        cy = (ys + offset[..., 1]) * self.config.stride
        bw = size[..., 0].clamp(min=0) * self.config.stride
        bh = size[..., 1].clamp(min=0) * self.config.stride
        boxes = torch.stack(
            [(cx - bw / 2) / width, (cy - bh / 2) / height, (cx + bw / 2) / width, (cy + bh / 2) / height],
            dim=-1,
        ).clamp(0.0, 1.0)
        valid = scores > self.config.score_threshold
        features = gather(maps.features) * valid.unsqueeze(-1).to(heat.dtype)
        tags = gather(maps.tag_logits).argmax(-1)
        attributes = gather(maps.attribute_logits).argmax(-1)
        return DetectorOutput(boxes, scores, tags, attributes, features, valid)
