"""Small reusable transformer blocks (pre-LayerNorm), written to export cleanly to ONNX."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention over a padded sequence; keys where ``mask`` is False are masked out."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, L, W); mask: (B, L) bool, True = attend."""
        b, length, w = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / (w // self.heads) ** 0.5  # (B, h, L, L)
        scores = scores.masked_fill(~mask[:, None, None, :], -1e4)
        attn = self.dropout(scores.softmax(-1))
        result: torch.Tensor = self.out((attn @ v).transpose(1, 2).reshape(b, length, w))
        return result


class TransformerBlock(nn.Module):
    """A pre-LayerNorm transformer layer: self-attention, then a GELU MLP, each with a residual."""

    def __init__(self, width: int, heads: int, intermediate: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, intermediate), nn.GELU(), nn.Linear(intermediate, width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, W), mask (B, L) bool, True = attend -> (B, L, W)."""
        x = x + self.dropout(self.attn(self.ln1(x), mask))
        result: torch.Tensor = x + self.dropout(self.mlp(self.ln2(x)))
        return result


class Encoder(nn.Module):
    """A stack of transformer blocks with a final LayerNorm."""

    def __init__(self, width: int, layers: int, heads: int, intermediate: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, intermediate, dropout) for _ in range(layers)
        )
        self.ln = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, W), mask (B, L) bool, True = attend -> (B, L, W)."""
        for block in self.blocks:
            x = block(x, mask)
        result: torch.Tensor = self.ln(x)
        return result


class Hypersphere(nn.Module):
    """Project onto the unit hypersphere, times a learned scale: ``s * h / ||h||``."""

    def __init__(self, width: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(width) ** 0.5).log())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., W) -> the same shape, each vector rescaled to the learned length ``s``."""
        return F.normalize(h, dim=-1, eps=1e-6) * self.log_scale.exp()


class MLP(nn.Module):
    """Two-layer head: Linear, GELU, LayerNorm, Linear.

    ``out_bias=False`` drops the last layer's bias, for heads whose outputs only matter relative to
    each other (a softmax over them): there a bias adds the same constant to every output, its
    gradient is exactly zero, and an optimiser would turn float noise into steps.
    """

    OUTPUT = "net.3"  # the last Linear, one row per output: its state-dict keys end in OUTPUT.weight/.bias

    def __init__(self, width: int, out: int, hidden: int | None = None, out_bias: bool = True):
        super().__init__()
        hidden = hidden or width
        self.net = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, out, bias=out_bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., width) -> (..., out)."""
        result: torch.Tensor = self.net(x)
        return result
