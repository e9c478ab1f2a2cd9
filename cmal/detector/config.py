"""Detector architecture config (frozen; saved next to the weights)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's architecture, saved as ``detector.json`` next to its weights."""

    image_size: int = 128  # input side in pixels (images are resized to it)
    stride: int = 4  # output stride of the heatmap; 128 px -> 32x32 cells
    widths: tuple[int, ...] = (24, 48, 64, 96)  # channels at strides 2, 4, 8, 16
    neck_width: int = 48  # channels of the stride-4 feature map the heads read
    feature_dim: int = 64  # D: region feature size handed to CMAL
    num_tags: int = 5  # object classes
    num_attributes: int = 6  # attributes (colours)
    max_detections: int = 10  # K: regions per image
    score_threshold: float = 0.3  # a region is valid above this peak score
    # Channels of a shape-blind colour path (0: none, as detectors before it): per-pixel 1x1
    # convolutions, then max-pooling, so it sees colours but no outline. It alone feeds the attribute
    # head and fills the last ``colour_channels`` of each region feature; the CNN fills the rest and
    # feeds the tag head. Colour and shape are then read apart, for colour–shape pairs never seen.
    colour_channels: int = 0
    # Cells a side of the square the colour path max-pools over around each cell (odd): 3 reaches
    # 4 px (one stride) from an object's centre cell, 5 reaches 8 px, for hollow objects (rings)
    # whose centre is background.
    colour_window: int = 3
    grey_backbone: bool = False  # the CNN (shape) path sees the image in grey: outline, not colour
    # the CNN path sees, per pixel, how far its colour is from the image's mean colour: outline, not
    # colour, like grey, but no colour vanishes into a background of the same grey
    contrast_backbone: bool = False

    def __post_init__(self) -> None:
        if self.grey_backbone and self.contrast_backbone:
            raise ValueError("choose one of grey_backbone and contrast_backbone")
        if self.colour_window < 1 or self.colour_window % 2 == 0:
            raise ValueError(f"colour_window must be a positive odd cell count, got {self.colour_window}")
        deepest = 2 ** len(self.widths)  # the stride of the last stage, which the neck upsamples
        if self.image_size <= 0 or self.image_size % deepest:
            raise ValueError(f"image_size must be a positive multiple of {deepest}, got {self.image_size}")

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DetectorConfig:
        """A config from its JSON dict; unknown fields raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown detector config fields: {', '.join(sorted(unknown))}")
        if "widths" in data:
            data = {**data, "widths": tuple(data["widths"])}
        return cls(**data)

    def save(self, path: Path) -> None:
        """Write the config to ``path`` as indented JSON."""
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> DetectorConfig:
        """Read a config written by `save`."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
