"""Cut a batch of texts into sub-batches of similar length, so short texts are not padded to the
longest one.

A batch is padded to its longest text, and every padded position still costs a full pass through
the fusion encoder. Mixed requests (a four-word grounding expression beside a thirty-token
caption) waste most of a large batch that way, so a larger batch costs more per row, not less.
Running it as a few groups of similar length, each padded to its own longest text, saves that
work; each row's result is unchanged, since attention never crosses rows and padding is masked.
Used by fine-tuning (`cmal.train.lengths`) and by inference (`cmal.inference.fuse_by_length`);
torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

A = TypeVar("A", bound=Any)  # numpy array or torch tensor: both index rows and slice alike
TEXT_INPUTS = ("input_ids", "attention_mask")  # a batch's inputs with a text-length axis

# What one more call costs, in padded text positions of one row: launching a graph and gathering
# its inputs. Measured on the demo model with ONNX Runtime on one CPU thread (the service's
# workers): a lone row costs about 0.45 ms more than a row of a batch of 8, and a text position
# about 0.03 ms (scripts/finetune_speed.py and `cmal bench` measure the effect end to end).
CALL_COST_POSITIONS = 15
# most sub-batches one inference batch is cut into (the service's CMAL_LENGTH_GROUPS; 1: never cut)
INFERENCE_GROUPS = 4


def length_groups(lengths: Sequence[int], most: int, call_cost: float = 0.0) -> list[list[int]]:
    """Split rows into at most ``most`` groups of similar length, at the least cost.

    The rows are sorted by length and cut into contiguous runs. A run costs (its rows) × (its
    longest length) padded positions, and each run beyond the first costs ``call_cost`` more; the
    cuts minimising the total are found exactly by dynamic programming. A cut between two rows of
    the same length never saves anything (either row costs that length in the run after it as in
    the run before), so cuts are tried only where the length grows: O(most · D²) for D distinct
    lengths (at most the text limit), not O(most · B²) for B rows, on the service's hot path.

    Args:
        lengths: text length of each row.
        most: most groups to make (1: the whole batch as it is).
        call_cost: what one more group costs, in padded positions.

    Returns:
        Row indices of each group, shortest texts first; every row in exactly one group.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ordered = [lengths[i] for i in order]
    b = len(ordered)
    if b == 0:
        return []
    # where a run may end (exclusive row positions in sorted order): where the length grows, and at b
    points = [0] + [j for j in range(1, b + 1) if j == b or ordered[j] > ordered[j - 1]]
    d = len(points) - 1
    most = max(1, min(most, d))
    inf = float("inf")
    # best[g][j]: least cost of the rows before points[j] in g groups; cut[g][j]: the point where
    # that solution's last group starts
    best = [[inf] * (d + 1) for _ in range(most + 1)]
    cut = [[0] * (d + 1) for _ in range(most + 1)]
    best[0][0] = -call_cost  # the first group is paid for anyway
    for g in range(1, most + 1):
        for j in range(g, d + 1):
            end, longest = points[j], ordered[points[j] - 1]
            for i in range(g - 1, j):
                cost = best[g - 1][i] + (end - points[i]) * longest + call_cost
                if cost < best[g][j]:
                    best[g][j], cut[g][j] = cost, i
    g = min(range(1, most + 1), key=lambda n: (best[n][d], n))  # fewest groups among the cheapest
    bounds, j = [], d
    while j > 0:
        bounds.append((points[cut[g][j]], points[j]))
        j, g = cut[g][j], g - 1
    return [order[i:j] for i, j in reversed(bounds)]


def take_rows(batch: Mapping[str, A], rows: Sequence[int] | Any, longest: int) -> dict[str, A]:
    """The batch's ``rows`` (numpy arrays or torch tensors alike), its text inputs trimmed to
    ``longest`` positions, their longest text."""
    part = {k: v[rows] for k, v in batch.items()}
    for name in TEXT_INPUTS:
        part[name] = part[name][:, :longest]
    return part
