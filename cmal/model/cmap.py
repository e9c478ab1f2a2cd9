"""The cross-modal associative prompt (CMAP) layer: anchor point masking + swap feature filling.

For each chosen anchor pair (k, j), the original content of text slot j and region slot k is
removed (masking) and replaced (filling) with the other modality's representation mapped across
by a learned projection: text slot j <- ``P_vt(ĥ^v_src)``, region slot k <- ``P_tv(ĥ^t_src)``. For a
true swap the sources are the partners (src = k, resp. j); for a false swap they are a non-matching
region / word. Scatter is written as a one-hot matmul so the layer exports to ONNX as plain ops.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cmal.model.config import CMAP_MODES


class Prompt(NamedTuple):
    """The CMAP layer's output: text and region slots after masking and filling, and which were filled."""

    text: torch.Tensor  # (B, L, U) text slots after CMAP
    regions: torch.Tensor  # (B, K, U) region slots after CMAP
    text_swapped: torch.Tensor  # (B, L) float 1 where a slot was filled
    region_swapped: torch.Tensor  # (B, K)


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, U) at index (B, S) -> (B, S, U)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class CMAP(nn.Module):
    """Anchor point masking and swap feature filling, with the cross-modal projections P_vt and P_tv."""

    def __init__(self, width: int):
        super().__init__()
        self.visual_to_text = nn.Linear(width, width)  # P_vt
        self.text_to_visual = nn.Linear(width, width)  # P_tv

    def forward(
        self,
        text: torch.Tensor,
        regions: torch.Tensor,
        swap_token: torch.Tensor,
        swap_region: torch.Tensor,
        swap_valid: torch.Tensor,
        text_source: torch.Tensor,
        region_source: torch.Tensor,
        mode: str,
        geometry: torch.Tensor | None = None,
        markers: torch.Tensor | None = None,
    ) -> Prompt:
        """Build the hybrid slots.

        Args:
            text: ĥ^t (B, L, U). regions: ĥ^v (B, K, U).
            swap_token, swap_region: (B, S) slots of each chosen pair.
            swap_valid: (B, S) bool, real pair.
            text_source: (B, S) region whose feature fills text slot ``swap_token``.
            region_source: (B, S) token whose feature fills region slot ``swap_region``.
            mode: ``swap`` replaces the slot, ``mix`` adds to it, ``off`` leaves the input as is.
            geometry: (B, K, U) an embedding of each region's box, or None. When given, every filled
                slot also gets a box: a text slot its source region's, a region slot its own (in
                ``swap`` mode; in ``mix`` mode it still holds its visual feature, box included).
            markers: (M, U) learned markers, or None. When given, the s-th pair's text slot and
                region slot both get marker s (the last one for s >= M), after masking and filling,
                in every mode (``off`` included: then nothing else changes).
        """
        if mode not in CMAP_MODES:
            raise ValueError(f"unknown CMAP mode {mode!r}")
        b, length, _ = text.shape
        k = regions.shape[1]
        zero_t = torch.zeros(b, length, dtype=text.dtype, device=text.device)
        zero_r = torch.zeros(b, k, dtype=text.dtype, device=text.device)
        if mode == "off" and markers is None:
            return Prompt(text, regions, zero_t, zero_r)
        valid = swap_valid.to(text.dtype).unsqueeze(-1)  # (B, S, 1)
        t_hot = (swap_token.unsqueeze(-1) == torch.arange(length, device=text.device)).to(text.dtype) * valid
        r_hot = (swap_region.unsqueeze(-1) == torch.arange(k, device=text.device)).to(text.dtype) * valid
        if mode == "off":
            text, regions = _mark(text, regions, t_hot, r_hot, markers)
            return Prompt(text, regions, zero_t, zero_r)
        text_fill = t_hot.transpose(1, 2) @ self.visual_to_text(_gather(regions, text_source))  # (B, L, U)
        region_fill = r_hot.transpose(1, 2) @ self.text_to_visual(_gather(text, region_source))  # (B, K, U)
        text_swapped = t_hot.sum(1).clamp(max=1.0)  # (B, L)
        region_swapped = r_hot.sum(1).clamp(max=1.0)
        if geometry is not None:
            text_fill = text_fill + t_hot.transpose(1, 2) @ _gather(geometry, text_source)
        if mode == "swap":
            text = text * (1 - text_swapped.unsqueeze(-1)) + text_fill
            regions = regions * (1 - region_swapped.unsqueeze(-1)) + region_fill
            if geometry is not None:
                regions = regions + region_swapped.unsqueeze(-1) * geometry
        else:  # mix
            text = text + text_fill
            regions = regions + region_fill
        text, regions = _mark(text, regions, t_hot, r_hot, markers)
        return Prompt(text, regions, text_swapped, region_swapped)


def _mark(
    text: torch.Tensor,
    regions: torch.Tensor,
    t_hot: torch.Tensor,
    r_hot: torch.Tensor,
    markers: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add marker s to both slots of pair s (t_hot (B, S, L), r_hot (B, S, K): the pairs' one-hot
    slots, zero rows for padding); no markers: unchanged."""
    if markers is None:
        return text, regions
    s = t_hot.shape[1]
    index = torch.arange(s, device=text.device).clamp(max=markers.shape[0] - 1)
    chosen = markers.index_select(0, index).to(text.dtype)  # (S, U)
    return text + t_hot.transpose(1, 2) @ chosen, regions + r_hot.transpose(1, 2) @ chosen
