"""The unified semantic encoder (USE): a BERT-style single-stream transformer over the hybrid prompt.

transformers' ``BertModel`` over ``inputs_embeds`` (standard weight names, initialisable from a
BERT checkpoint). Sequence: ``[CLS] text' [SEP]`` then the K region slots. Token types: 0 text,
1 region, 2 swapped slot. Text slots get positions 0..L-1; every region slot shares position
``max_tokens`` (regions are a set).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import BertConfig, BertModel
from transformers.utils import logging as hf_logging

from cmal.model.config import CMALConfig

TEXT_TYPE, REGION_TYPE, SWAPPED_TYPE = 0, 1, 2


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' notes while building BERT (on generation fields it does not use),
    and restore its verbosity afterwards: importing or building a model changes no global."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


class UnifiedEncoder(nn.Module):
    """BERT over the hybrid prompt: projected text slots, then region slots (see the module doc)."""

    def __init__(self, c: CMALConfig):
        super().__init__()
        self.max_tokens = c.max_tokens
        self.text_in = nn.Linear(c.umse_hidden, c.hidden)
        self.region_in = nn.Linear(c.umse_hidden, c.hidden)
        with _quiet_transformers():
            bert = BertConfig(
                vocab_size=1,  # BERT's word table is unused (we feed inputs_embeds): one frozen row
                hidden_size=c.hidden,
                num_hidden_layers=c.layers,
                num_attention_heads=c.heads,
                intermediate_size=c.intermediate,
                max_position_embeddings=c.max_tokens + 1,
                type_vocab_size=3,
                hidden_dropout_prob=c.dropout,
                attention_probs_dropout_prob=c.dropout,
            )
            self.bert = BertModel(bert, add_pooling_layer=False)
        self.bert.embeddings.word_embeddings.weight.requires_grad_(False)

    def forward(
        self,
        text: torch.Tensor,
        regions: torch.Tensor,
        attention_mask: torch.Tensor,
        region_valid: torch.Tensor,
        text_swapped: torch.Tensor,
        region_swapped: torch.Tensor,
    ) -> torch.Tensor:
        """text (B, L, U), regions (B, K, U), masks (B, L) / (B, K) -> (B, L + K, H)."""
        b, length, _ = text.shape
        k = regions.shape[1]
        embeds = torch.cat([self.text_in(text), self.region_in(regions)], dim=1)
        mask = torch.cat([attention_mask.long(), region_valid.long()], dim=1)
        types = torch.cat(
            [
                torch.where(text_swapped > 0, SWAPPED_TYPE, TEXT_TYPE),
                torch.where(region_swapped > 0, SWAPPED_TYPE, REGION_TYPE),
            ],
            dim=1,
        ).long()
        positions = torch.cat(
            [
                torch.arange(length, device=text.device).expand(b, length),
                torch.full((b, k), self.max_tokens, device=text.device, dtype=torch.long),
            ],
            dim=1,
        )
        out = self.bert(
            inputs_embeds=embeds, attention_mask=mask, token_type_ids=types, position_ids=positions
        )
        result: torch.Tensor = out.last_hidden_state
        return result
