"""Run a mixed-task fine-tuning batch as a few sub-batches of similar text length.

A random batch mixes short grounding expressions with long VE hypotheses and ITM captions, and
collation pads every text to the longest one (`cmal.text.length_groups` says why that costs and
how the cuts are chosen). The loss does not change: every example's logits are computed on its
own row, so the groups' logits, put back in the batch's order, are the batch's logits.
"""

from __future__ import annotations

import torch

from cmal.model.cmal import TaskOutputs
from cmal.text.length_groups import CALL_COST_POSITIONS, take_rows
from cmal.text.length_groups import length_groups as cut_by_length


def length_groups(lengths: torch.Tensor, groups: int) -> list[torch.Tensor]:
    """Row indices of up to ``groups`` sub-batches of similar length (`cmal.text.length_groups`),
    shortest texts first; ``lengths`` is (B,)."""
    cuts = cut_by_length(lengths.tolist(), groups, CALL_COST_POSITIONS)
    return [torch.tensor(rows, dtype=torch.long) for rows in cuts]


def rows_of(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch's ``rows``, with the text axis trimmed to their longest text."""
    return take_rows(batch, rows, int(batch["attention_mask"][rows].sum(1).max()))


def merge(parts: list[TaskOutputs], groups: list[torch.Tensor]) -> TaskOutputs:
    """The groups' outputs put back in the batch's row order."""
    inverse = torch.argsort(torch.cat(groups))
    return TaskOutputs(*(torch.cat(field)[inverse] for field in zip(*parts, strict=True)))
