"""CMAL architecture config: a frozen dataclass, one comment per field, with two presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

CMAP_MODES = ("swap", "mix", "off")


@dataclass(frozen=True)
class CMALConfig:
    """The CMAL architecture, saved as ``cmal.json`` next to its weights; bad values raise ``ValueError``."""

    vocab_size: int = 400  # WordPiece vocabulary (from the model's tokenizer)
    max_tokens: int = 40  # text length, [CLS] and [SEP] included
    max_regions: int = 10  # K: region slots from the detector
    region_feature_dim: int = 64  # D of the detector's region features
    num_concepts: int = 5  # AMC classes: the detector's tag vocabulary
    num_answers: int = 20  # VQA answer vocabulary (built from the training file)
    umse_hidden: int = 128  # width of both uni-modal semantic encoders
    umse_layers: int = 1  # layers of each uni-modal encoder
    umse_heads: int = 4  # attention heads of each uni-modal encoder
    hidden: int = 128  # unified semantic encoder (BERT) width
    layers: int = 2  # unified semantic encoder layers
    heads: int = 4  # unified semantic encoder attention heads
    intermediate: int = 256  # feed-forward width of all transformer layers
    dropout: float = 0.1  # dropout in every transformer layer
    cmap_mode: str = "swap"  # CMAP at inference: swap (replace), mix (add) or off
    # after CMAP, add an embedding of the region's box geometry to each filled slot (a swapped region
    # slot keeps its own box, a filled text slot gets its source region's): without it a swap
    # removes the named objects' geometry from both of their slots (measured in the demo card)
    slot_geometry: bool = False
    # add a learned marker to both slots of each anchor pair (the s-th pair, in text order, gets
    # marker s), in any CMAP mode: the word and its region are tied without overwriting either, so
    # a question naming two objects can find both regions, boxes included
    anchor_markers: bool = False
    objective: str = "amc"  # pre-training alignment objective: amc or cmcl (contrastive ablation)

    def __post_init__(self) -> None:
        if self.cmap_mode not in CMAP_MODES:
            raise ValueError(f"cmap_mode must be one of {CMAP_MODES}, got {self.cmap_mode!r}")
        if self.objective not in ("amc", "cmcl"):
            raise ValueError(f"objective must be amc or cmcl, got {self.objective!r}")
        for width, heads in ((self.hidden, self.heads), (self.umse_hidden, self.umse_heads)):
            if width % heads:
                raise ValueError(f"width {width} is not divisible by {heads} heads")

    def replace(self, **changes: Any) -> CMALConfig:
        """A copy with ``changes`` applied (checked again)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CMALConfig:
        """A config from its JSON dict; unknown fields raise ``ValueError``."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown CMAL config fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def save(self, path: Path) -> None:
        """Write the config to ``path`` as indented JSON."""
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> CMALConfig:
        """Read a config written by `save`."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def demo_config(**changes: Any) -> CMALConfig:
    """Small enough to pre-train and fine-tune on two CPU cores in minutes."""
    return CMALConfig().replace(**changes)


def paper_config(**changes: Any) -> CMALConfig:
    """The paper's size: 12 layers, hidden 768, 12 heads, 36 regions, 40 tokens."""
    return CMALConfig(
        max_regions=36,
        umse_hidden=768,
        umse_layers=2,
        umse_heads=12,
        hidden=768,
        layers=12,
        heads=12,
        intermediate=3072,
    ).replace(**changes)
