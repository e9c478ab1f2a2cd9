"""Inference in sub-batches of similar text length: each group is trimmed to its longest text, and
the outputs come back in the rows' order, equal to one call on the whole batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmal.inference import OnnxModel, encode_batch, fuse_by_length
from cmal.text.length_groups import CALL_COST_POSITIONS, length_groups

TEXTS = [
    "the red circle",
    "a picture of three objects: a small green triangle, a tiny orange square and a large orange disc.",
    "is there a square?",
    "the big blue square is to the left of the small yellow circle, and a green triangle is above it.",
    "a circle",
    "how many things are there?",
]


def feeds_of(lengths: list[int]) -> dict[str, np.ndarray]:
    width = max(lengths)
    mask = np.array([[1] * n + [0] * (width - n) for n in lengths], np.int64)
    ids = np.where(mask == 1, np.arange(1, width + 1), 0)
    return {"input_ids": ids, "attention_mask": mask, "region_valid": np.ones((len(lengths), 3), bool)}


def test_each_call_sees_its_rows_trimmed_and_outputs_keep_the_rows_order() -> None:
    lengths = [4, 30, 5, 29, 3, 31, 4, 28]
    feeds = feeds_of(lengths)
    calls: list[tuple[int, int]] = []

    def run(part: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(part["input_ids"].shape)
        assert part["attention_mask"][:, -1].any()  # trimmed: the last column belongs to some row
        # a row's "output" is its own length, so any mix-up of rows shows
        return {"length": part["attention_mask"].sum(1), "valid": part["region_valid"].sum(1)}

    out = fuse_by_length(feeds, run, most=4)
    assert out["length"].tolist() == lengths and out["valid"].tolist() == [3] * len(lengths)
    assert sorted(calls) == [(4, 5), (4, 31)]  # short and long apart, each padded to its own longest
    calls.clear()
    whole = fuse_by_length(feeds, run, most=1)
    assert calls == [(8, 31)] and whole["length"].tolist() == lengths


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_a_backend_gives_the_same_logits_in_groups_as_in_one_batch(tiny_exported: Path, kind: str) -> None:
    from service.runtime import load_backend

    image = Image.new("RGB", (128, 128), "white")
    backends = [load_backend(tiny_exported, None, kind, "fp32", 1, length_groups=n) for n in (1, 4)]
    regions = backends[0].detect([image] * len(TEXTS))
    lengths = encode_batch(backends[0].files, TEXTS, regions)["attention_mask"].sum(1).tolist()
    assert len(length_groups(lengths, 4, CALL_COST_POSITIONS)) > 1  # this batch is worth cutting
    whole, grouped = (b.fuse(TEXTS, regions) for b in backends)
    assert whole.keys() == grouped.keys()
    for name in whole:
        np.testing.assert_allclose(grouped[name], whole[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_the_onnx_model_cuts_by_default(tiny_exported: Path) -> None:
    assert OnnxModel(tiny_exported).length_groups > 1
    assert OnnxModel(tiny_exported, length_groups=1).length_groups == 1
