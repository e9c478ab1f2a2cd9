"""Batches run as sub-batches of similar text length: the cuts are the cheapest, a group is trimmed
to its longest text, and fine-tuning's losses and gradients are the whole batch's."""

from __future__ import annotations

import itertools
import random

import torch

from cmal.text.length_groups import length_groups as cut_by_length
from cmal.train.lengths import length_groups, rows_of
from cmal.train.steps import FinetuneStep
from tests.unit.test_cmal_model import batches, tiny_model

TASKS = ("ve", "itm", "vqa", "rec")


def cost(lengths: list[int], groups: list[list[int]], call_cost: float) -> float:
    return sum(len(g) * max(lengths[i] for i in g) for g in groups) + call_cost * (len(groups) - 1)


def cheapest_by_brute_force(lengths: list[int], most: int, call_cost: float) -> float:
    ordered = sorted(lengths)
    b = len(ordered)
    best = float(b * ordered[-1])
    for n in range(1, most):
        for cuts in itertools.combinations(range(1, b), n):
            bounds = [0, *cuts, b]
            padded = sum((j - i) * ordered[j - 1] for i, j in itertools.pairwise(bounds))
            best = min(best, padded + call_cost * n)
    return best


def test_groups_hold_every_row_once_at_the_least_cost() -> None:
    rng = random.Random(0)
    for trial in range(120):
        # a third of the trials from a few lengths only: many rows of equal length, where no cut is tried
        top = 30 if trial % 3 else 6
        lengths = [rng.randint(3, top) for _ in range(rng.randint(1, 11))]
        most, call_cost = 1 + trial % 4, (0.0, 15.0)[trial % 2]
        groups = cut_by_length(lengths, most, call_cost)
        assert sorted(r for g in groups for r in g) == list(range(len(lengths)))
        assert 1 <= len(groups) <= most
        for left, right in itertools.pairwise(groups):  # shortest texts first
            assert max(lengths[i] for i in left) <= min(lengths[i] for i in right)
        assert cost(lengths, groups, call_cost) == cheapest_by_brute_force(lengths, most, call_cost)


def test_equal_lengths_or_a_dear_call_keep_one_group() -> None:
    assert cut_by_length([7, 7, 7, 7], 4) == [[0, 1, 2, 3]]
    assert cut_by_length([3, 30], 2, call_cost=0) == [[0], [1]]
    assert cut_by_length([3, 30], 2, call_cost=100) == [[0, 1]]  # 27 positions saved, 100 spent
    assert cut_by_length([], 4) == []


def test_a_group_is_trimmed_to_its_longest_text(tiny_world) -> None:  # type: ignore[no-untyped-def]
    _, fine = batches(tiny_world)
    lengths = fine["attention_mask"].sum(1)
    shortest = length_groups(lengths, 3)[0]
    part = rows_of(fine, shortest)
    assert part["input_ids"].shape == (len(shortest), int(lengths[shortest].max()))
    assert part["input_ids"].shape[1] < fine["input_ids"].shape[1]
    torch.testing.assert_close(part["region_features"], fine["region_features"][shortest])


def test_sub_batches_give_the_whole_batchs_losses_and_gradients(tiny_world) -> None:  # type: ignore[no-untyped-def]
    _, fine = batches(tiny_world)
    assert len(length_groups(fine["attention_mask"].sum(1), 3)) == 3  # the batch's lengths do differ
    results = []
    for groups in (1, 3):
        model = tiny_model(tiny_world)
        losses = FinetuneStep(model, TASKS, length_groups=groups)(fine)
        losses["total"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append(({k: v.detach() for k, v in losses.items()}, grads))
    (whole, whole_grads), (split, split_grads) = results
    assert whole.keys() == split.keys() == {"total", *TASKS}
    for k in whole:
        torch.testing.assert_close(split[k], whole[k], rtol=1e-5, atol=1e-6)
    assert whole_grads.keys() == split_grads.keys()
    for name, grad in whole_grads.items():
        torch.testing.assert_close(split_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
