"""CMAP: the right features land in the right slots; pre-training swaps and AMC labels are right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmal.model.cmap import CMAP
from cmal.text.anchors import Anchor
from cmal.text.tokenizer import MASK_ID
from cmal.train.examples import Example, Masking, collate


def identity_cmap(width: int) -> CMAP:
    cmap = CMAP(width)
    with torch.no_grad():
        for lin in (cmap.visual_to_text, cmap.text_to_visual):
            lin.weight.copy_(torch.eye(width))
            lin.bias.zero_()
    return cmap


def slots() -> tuple[torch.Tensor, torch.Tensor]:
    text = torch.arange(1, 6).float().view(1, 5, 1).expand(1, 5, 3).clone()  # slot j holds j+1
    regions = -torch.arange(1, 5).float().view(1, 4, 1).expand(1, 4, 3).clone()  # slot k holds -(k+1)
    return text, regions


def run(mode: str, text_source: list[int] | None = None, region_source: list[int] | None = None):  # type: ignore[no-untyped-def]
    text, regions = slots()
    token, region = torch.tensor([[2, 4]]), torch.tensor([[1, 3]])
    valid = torch.tensor([[True, False]])  # the second pair is padding
    ts = torch.tensor([text_source]) if text_source else region
    rs = torch.tensor([region_source]) if region_source else token
    return identity_cmap(3)(text, regions, token, region, valid, ts, rs, mode)


def test_swap_replaces_both_slots_with_the_partner() -> None:
    p = run("swap")
    assert p.text[0, :, 0].tolist() == [1, 2, -2, 4, 5]  # text slot 2 <- region 1
    assert p.regions[0, :, 0].tolist() == [-1, 3, -3, -4]  # region slot 1 <- token 2
    assert p.text_swapped.tolist() == [[0, 0, 1, 0, 0]]
    assert p.region_swapped.tolist() == [[0, 1, 0, 0]]  # padding pair (4, 3) untouched


def test_mix_adds_and_off_leaves_alone() -> None:
    p = run("mix")
    assert p.text[0, :, 0].tolist() == [1, 2, 1, 4, 5]  # 3 + (-2)
    assert p.regions[0, :, 0].tolist() == [-1, 1, -3, -4]  # -2 + 3
    p = run("off")
    assert p.text[0, :, 0].tolist() == [1, 2, 3, 4, 5]
    assert p.text_swapped.sum() == 0 and p.region_swapped.sum() == 0
    with pytest.raises(ValueError, match="unknown CMAP mode"):
        run("blend")


def test_slot_geometry_gives_each_filled_slot_a_box() -> None:
    text, regions = slots()
    token, region = torch.tensor([[2, 4]]), torch.tensor([[1, 3]])
    valid = torch.tensor([[True, False]])
    geometry = 100 * torch.arange(1, 5).float().view(1, 4, 1).expand(1, 4, 3)  # region k's box: 100(k+1)
    cmap = identity_cmap(3)
    p = cmap(text, regions, token, region, valid, region, token, "swap", geometry)
    assert p.text[0, :, 0].tolist() == [1, 2, -2 + 200, 4, 5]  # text slot 2: region 1 and its box
    assert p.regions[0, :, 0].tolist() == [-1, 3 + 200, -3, -4]  # region slot 1 keeps its own box
    # a false swap: the text slot gets its source region's box, the region slot still its own
    false_text, false_region = torch.tensor([[3, 0]]), torch.tensor([[0, 0]])
    p = cmap(text, regions, token, region, valid, false_text, false_region, "swap", geometry)
    assert p.text[0, 2, 0] == -4 + 400 and p.regions[0, 1, 0] == 1 + 200
    p = cmap(text, regions, token, region, valid, region, token, "mix", geometry)
    assert p.text[0, :, 0].tolist() == [1, 2, 3 - 2 + 200, 4, 5]
    assert p.regions[0, :, 0].tolist() == [-1, -2 + 3, -3, -4]  # the visual feature is still there


def test_anchor_markers_tie_each_pair_in_every_mode() -> None:
    text, regions = slots()
    token, region = torch.tensor([[2, 4, 0]]), torch.tensor([[1, 3, 0]])
    valid = torch.tensor([[True, True, False]])  # the third pair is padding
    markers = torch.tensor([[10.0], [20.0]]).expand(2, 3)  # two markers: pair s >= 2 gets the last
    cmap = identity_cmap(3)
    p = cmap(text, regions, token, region, valid, region, token, "off", None, markers)
    # pair 0 (token 2, region 1) gets marker 10 on both slots, pair 1 (token 4, region 3) marker 20
    assert p.text[0, :, 0].tolist() == [1, 2, 3 + 10, 4, 5 + 20]
    assert p.regions[0, :, 0].tolist() == [-1, -2 + 10, -3, -4 + 20]
    assert p.text_swapped.sum() == 0 and p.region_swapped.sum() == 0  # nothing was filled
    p = cmap(text, regions, token, region, valid, region, token, "swap", None, markers)
    assert p.text[0, :, 0].tolist() == [1, 2, -2 + 10, 4, -4 + 20]  # after the swap fill
    assert p.regions[0, :, 0].tolist() == [-1, 3 + 10, -3, 5 + 20]
    three = torch.tensor([[2, 4, 1]]), torch.tensor([[1, 3, 2]]), torch.tensor([[True, True, True]])
    p = cmap(text, regions, three[0], three[1], three[2], three[1], three[0], "off", None, markers)
    assert p.text[0, 1, 0] == 2 + 20 and p.regions[0, 2, 0] == -3 + 20  # pair 2: the last marker


def test_false_swap_fills_from_the_given_sources() -> None:
    p = run("swap", text_source=[3, 0], region_source=[0, 0])
    assert p.text[0, 2, 0] == -4  # from region 3, not the partner region 1
    assert p.regions[0, 1, 0] == 1  # from token 0, not the partner token 2


def _table(tiny_world):  # type: ignore[no-untyped-def]
    return tiny_world[1]


def test_collate_true_and_false_swaps_and_amc_labels(tiny_world) -> None:  # type: ignore[no-untyped-def]
    _, table, _, _ = tiny_world
    row = next(i for i in range(len(table.paths)) if table.valid[i].sum() >= 3)
    tags = table.tags[row]
    valid = np.flatnonzero(table.valid[row])
    k0, k1 = int(valid[0]), int(valid[1])
    # an example whose tokens 2 and 5 anchor to regions k0 and k1
    ex = Example(
        uid=7, task="captions", row=row, ids=[2, 10, 11, 12, 13, 14, 15, 3],
        anchors=[Anchor(k0, 2, int(tags[k0])), Anchor(k1, 5, int(tags[k1]))],
    )  # fmt: skip
    true = collate(
        [ex],
        table,
        pretrain=True,
        masking=Masking(swap_fraction=1.0, false_swap=0.0, mlm_probability=0.0),
        vocab_size=50,
    )
    pairs = sorted(zip(true["swap_token"][0].tolist(), true["swap_region"][0].tolist(), strict=True))
    same_concept = tags[k0] == tags[k1]
    assert pairs == sorted([(2, k0), (5, k1)]) or same_concept
    assert torch.equal(true["text_source"], true["swap_region"])  # true swaps: partners
    assert torch.equal(true["region_source"], true["swap_token"])
    length = true["input_ids"].shape[1]
    s = true["swap_token"].shape[1]
    # AMC at both slots of each swap, labelled with the anchor's concept
    assert torch.equal(true["amc_positions"][0, :s], true["swap_token"][0])
    assert torch.equal(true["amc_positions"][0, s:], length + true["swap_region"][0])
    concept = {2: int(tags[k0]), 5: int(tags[k1])}
    assert true["amc_labels"][0, :s].tolist() == [concept[t] for t in true["swap_token"][0].tolist()]
    assert torch.equal(true["amc_labels"][0, :s], true["amc_labels"][0, s:])

    false = collate(
        [ex],
        table,
        pretrain=True,
        masking=Masking(swap_fraction=1.0, false_swap=1.0, mlm_probability=0.0),
        vocab_size=50,
    )
    for t, r, ts, rs, label in zip(
        false["swap_token"][0].tolist(), false["swap_region"][0].tolist(), false["text_source"][0].tolist(),
        false["region_source"][0].tolist(), false["amc_labels"][0].tolist(), strict=False,
    ):  # fmt: skip
        if ts == r:
            continue  # no non-matching source was available
        assert table.valid[row, ts] and int(tags[ts]) != label  # filled from a non-matching region
        assert rs != t and rs not in (0, len(ex.ids) - 1)  # and a non-matching, non-special token
        assert label == concept[t]  # the label stays the concept that stood at the slot


def test_mlm_masks_only_non_anchor_caption_tokens(tiny_world) -> None:  # type: ignore[no-untyped-def]
    _, table, _, _ = tiny_world
    ids = [2, *range(10, 40), 3]
    cap = Example(uid=1, task="captions", row=0, ids=ids, anchors=[Anchor(0, 4, 0)])
    itm = Example(uid=2, task="itm", row=0, ids=ids, anchors=[], match=0.0)
    b = collate([cap, itm], table, pretrain=True, masking=Masking(mlm_probability=1.0), vocab_size=50)
    assert b["mlm_valid"][0].tolist() == [j not in (0, 4, len(ids) - 1) for j in range(len(ids))]
    assert not b["mlm_valid"][1].any()  # ITM pairs are never corrupted
    assert torch.equal(b["input_ids"][1], torch.tensor(ids))
    assert (b["input_ids"][0] == MASK_ID).sum() > 20  # about 80% become [MASK]
    assert torch.equal(b["mlm_labels"][0][b["mlm_valid"][0]], torch.tensor(ids)[b["mlm_valid"][0]])


def test_focus_words_are_masked_at_their_own_rate(tiny_world) -> None:  # type: ignore[no-untyped-def]
    _, table, _, _ = tiny_world
    focus = frozenset({11, 12})
    examples = [
        Example(uid=u, task="captions", row=0, ids=[2, 10, 11, 12, 13, 3], anchors=[]) for u in range(400)
    ]
    masking = Masking(mlm_probability=0.0, focus_probability=0.5, focus_ids=focus)
    b = collate(examples, table, pretrain=True, masking=masking, vocab_size=50)
    labels = b["mlm_labels"][b["mlm_valid"]]
    assert set(labels.tolist()) == set(focus)  # other words are never masked at probability 0
    share = b["mlm_valid"][:, 2:4].float().mean().item()
    assert 0.4 < share < 0.6  # 800 draws at 0.5


def test_batches_are_reproducible_per_example(tiny_world) -> None:  # type: ignore[no-untyped-def]
    _, table, _, _ = tiny_world
    ex = Example(uid=3, task="captions", row=1, ids=[2, *range(10, 30), 3], anchors=[])
    other = Example(uid=4, task="captions", row=2, ids=[2, *range(10, 30), 3], anchors=[])
    a = collate([ex], table, pretrain=True, seed=5, epoch=2, vocab_size=50)
    b = collate([other, ex], table, pretrain=True, seed=5, epoch=2, vocab_size=50)
    assert torch.equal(a["input_ids"][0], b["input_ids"][1])  # same example, same corruption


def test_geometry_probe_counts_synonyms_as_right() -> None:
    from types import SimpleNamespace

    from cmal.train.steps import geometry_word_hits

    # ids 20 "tiny", 21 "small", 22 "large", 23 "left": the stub predicts 21 everywhere
    concepts = {20: "size:small", 21: "size:small", 22: "size:large", 23: "relation:left"}

    class Stub(torch.nn.Module):
        config = SimpleNamespace(objective="amc")

        def encode(self, ids, *args, **kwargs):  # type: ignore[no-untyped-def]
            return SimpleNamespace(sequence=torch.zeros(ids.shape[0], ids.shape[1] + 2, 4))

        def mlm_head(self, seq, positions):  # type: ignore[no-untyped-def]
            logits = torch.zeros(*positions.shape, 30)
            logits[..., 21] = 1.0
            return logits

    ids = torch.tensor([[2, 20, 22, 23, 3]])
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "region_boxes": torch.zeros(1, 2, 4),
        "region_features": torch.zeros(1, 2, 8),
        "region_valid": torch.ones(1, 2, dtype=torch.bool),
        "swap_token": torch.zeros(1, 1, dtype=torch.long),
        "swap_region": torch.zeros(1, 1, dtype=torch.long),
        "swap_valid": torch.zeros(1, 1, dtype=torch.bool),
        "text_source": torch.zeros(1, 1, dtype=torch.long),
        "region_source": torch.zeros(1, 1, dtype=torch.long),
        "mlm_labels": ids.clone(),
        "mlm_valid": torch.tensor([[False, True, True, True, False]]),
    }
    step = SimpleNamespace(model=Stub(), plain_pass=False)
    hits = geometry_word_hits(step, batch, concepts)  # type: ignore[arg-type]
    assert hits == {"size": (1, 2), "relation": (0, 1)}  # "small" for "tiny" is right
