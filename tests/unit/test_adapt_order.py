"""End-to-end adaptation's batch order: each image's examples together, so a batch runs the
detector over few images, and still a different shuffle every epoch."""

from __future__ import annotations

import itertools

import numpy as np

from cmal.train.adapt import by_image
from cmal.train.examples import Example


def test_examples_of_an_image_are_next_to_each_other() -> None:
    examples = [Example(uid=i, task="vqa", row=i % 25, ids=[2, 3], anchors=[]) for i in range(100)]
    first, second = by_image(examples, 0, 1), by_image(examples, 0, 2)
    for order in (first, second):
        assert sorted(order.tolist()) == list(range(100))  # a permutation
        rows = [examples[i].row for i in order]
        assert sum(a != b for a, b in itertools.pairwise(rows)) == 24  # 25 runs of 4
        batches = [len({examples[i].row for i in order[s : s + 16]}) for s in range(0, 100, 16)]
        assert max(batches) <= 5  # 16 examples over at most 5 images, not 16
    assert not np.array_equal(first, second)
    assert np.array_equal(first, by_image(examples, 0, 1))  # reproducible
