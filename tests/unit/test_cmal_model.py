"""The CMAL model: gradients everywhere, each objective and head can overfit, configs and weights
round-trip exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cmal.model.cmal import CMAL
from cmal.model.config import CMALConfig, demo_config, paper_config
from cmal.model.io import VQA_OUTPUT, load_cmal, load_partial, save_cmal
from cmal.objectives.slots import mlm_loss
from cmal.objectives.tasks import itm_loss
from cmal.tasks import VE_LABELS
from cmal.train.examples import KIND_INDEX, collate, load_examples
from cmal.train.steps import FinetuneStep, PretrainStep, encode_batch

TINY = dict(umse_hidden=32, umse_heads=2, hidden=32, heads=2, layers=1, intermediate=64, dropout=0.0)


def tiny_model(tiny_world, **changes) -> CMAL:  # type: ignore[no-untyped-def]
    _, table, tokenizer, vocab = tiny_world
    config = demo_config(
        **{**TINY, **changes},
        vocab_size=tokenizer.get_vocab_size(),
        num_concepts=len(vocab.tags),
        num_answers=len(vocab.answers),
        region_feature_dim=table.features.shape[-1],
        max_regions=table.features.shape[1],
    )
    torch.manual_seed(0)
    return CMAL(config)


def batches(tiny_world, n: int = 8):  # type: ignore[no-untyped-def]
    folder, table, tokenizer, vocab = tiny_world
    ex = load_examples(folder, ("captions", "itm", "ve", "rec", "vqa"), table, tokenizer, vocab)
    by_task = {t: [e for e in ex if e.task == t] for t in ("captions", "itm", "ve", "rec", "vqa")}
    by_task["rec"] = [e for e in by_task["rec"] if e.label is not None]
    by_task["itm"] = by_task["itm"][:n]
    pre = collate(
        by_task["captions"][:n] + by_task["itm"], table, pretrain=True, vocab_size=tokenizer.get_vocab_size()
    )
    answer_ids = {a: i for i, a in enumerate(vocab.answers)}
    fine = collate(
        by_task["ve"][:n] + by_task["rec"][:n] + by_task["vqa"][:n] + by_task["itm"],
        table, pretrain=False, num_answers=len(vocab.answers), answer_ids=answer_ids,
    )  # fmt: skip
    return pre, fine


def test_every_parameter_gets_a_gradient(tiny_world) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model(tiny_world)
    pre, fine = batches(tiny_world)
    loss = PretrainStep(model)(pre)["total"] + FinetuneStep(model, ("ve", "itm", "vqa", "rec"))(fine)["total"]
    loss.backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert missing == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["use.bert.embeddings.word_embeddings.weight"]  # unused: we feed inputs_embeds


def _overfit(model: CMAL, step, batch, key: str, steps: int = 150) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    first = last = 0.0
    for i in range(steps):
        loss = step(batch)[key]
        if i == 0:
            first = loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = loss.item()
    return first, last


@pytest.mark.parametrize("objective", ["mlm", "itm", "amc", "cmcl"])
def test_each_pretraining_objective_overfits_a_small_batch(tiny_world, objective: str) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model(tiny_world, objective="cmcl" if objective == "cmcl" else "amc")
    pre, _ = batches(tiny_world)
    first, last = _overfit(model, PretrainStep(model), pre, objective)
    assert last < first / 10, (objective, first, last)


def test_plain_pass_reads_mlm_and_itm_from_the_unswapped_prompt(tiny_world) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model(tiny_world).eval()
    pre, _ = batches(tiny_world)
    length = pre["input_ids"].shape[1]
    positions = torch.arange(length).expand(pre["input_ids"].shape[0], length)

    def mlm(sequence: torch.Tensor) -> torch.Tensor:
        return mlm_loss(model.mlm_head(sequence, positions), pre["mlm_labels"], pre["mlm_valid"])

    with torch.no_grad():
        swapped = PretrainStep(model)(pre)
        plain = PretrainStep(model, plain_pass=True)(pre)
        off = encode_batch(model, pre, mode="off").sequence
        swap = encode_batch(model, pre, mode="swap").sequence
        itm = itm_loss(model.itm_head(off).squeeze(-1), pre["match"], pre["task"] == KIND_INDEX["itm"])
        mlm_off, mlm_swap = mlm(off), mlm(swap)
    assert pre["swap_valid"].any()
    assert (off - swap).abs().amax() > 0.1  # the swaps change the sequence the heads read
    torch.testing.assert_close(plain["amc"], swapped["amc"])  # AMC keeps the swapped pass
    torch.testing.assert_close(plain["itm"], itm)  # MLM and ITM read the unswapped pass ...
    torch.testing.assert_close(plain["mlm"], mlm_off)
    torch.testing.assert_close(swapped["mlm"], mlm_swap)  # ... where, without it, they read the swapped one
    torch.testing.assert_close(plain["total"], plain["mlm"] + plain["itm"] + plain["amc"])


@pytest.mark.parametrize("head", ["ve", "itm", "vqa", "rec"])
def test_each_task_head_overfits_a_small_batch(tiny_world, head: str) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model(tiny_world)
    _, fine = batches(tiny_world)
    first, last = _overfit(model, FinetuneStep(model, (head,)), fine, head)
    assert last < first / 10, (head, first, last)


def test_grounding_expressions_train_the_itm_head_as_match_or_not(tiny_world) -> None:  # type: ignore[no-untyped-def]
    folder, table, tokenizer, vocab = tiny_world
    rec = load_examples(folder, ("rec",), table, tokenizer, vocab)
    assert all(e.match == float(e.box is not None) for e in rec)
    named = [e for e in rec if e.box is not None][:4]
    nothing = [e for e in rec if e.box is None][:4]
    assert len(nothing) == 4  # the generator's expressions that name nothing
    batch = collate(named + nothing, table, pretrain=False, num_answers=len(vocab.answers))
    model = tiny_model(tiny_world).eval()
    with torch.no_grad():
        both = FinetuneStep(model, ("rec", "itm"))(batch)
        itm_only = FinetuneStep(model, ("itm",))(batch)
        logits = model.tasks(encode_batch(model, batch).sequence, batch["region_valid"]).itm_logits
    torch.testing.assert_close(both["itm"], itm_loss(logits, batch["match"], torch.ones(8, dtype=torch.bool)))
    assert itm_only["itm"].item() == 0.0  # without grounding, ITM reads only its own examples


def test_entailed_and_contradicted_hypotheses_train_the_itm_head_on_request(tiny_world) -> None:  # type: ignore[no-untyped-def]
    folder, table, tokenizer, vocab = tiny_world
    ve = load_examples(folder, ("ve",), table, tokenizer, vocab)
    chosen = {label: [e for e in ve if VE_LABELS[e.label] == label][:3] for label in VE_LABELS}
    assert all(len(examples) == 3 for examples in chosen.values())
    pairs = load_examples(folder, ("itm",), table, tokenizer, vocab)[:3]
    mixed = chosen["entailment"] + chosen["contradiction"] + chosen["neutral"] + pairs
    assert [e.match for e in mixed[:9]] == [1.0] * 3 + [0.0] * 3 + [-1.0] * 3
    batch = collate(mixed, table, pretrain=False, num_answers=len(vocab.answers))
    model = tiny_model(tiny_world).eval()
    with torch.no_grad():
        shared = FinetuneStep(model, ("ve", "itm"), ve_trains_itm=True)(batch)
        apart = FinetuneStep(model, ("ve", "itm"))(batch)
        logits = model.tasks(encode_batch(model, batch).sequence, batch["region_valid"]).itm_logits
    # a neutral hypothesis is neither a match nor a non-match; ITM's own pairs count either way
    settled = torch.tensor([True] * 6 + [False] * 3 + [True] * 3)
    torch.testing.assert_close(shared["itm"], itm_loss(logits, batch["match"], settled))
    own_pairs = torch.tensor([False] * 9 + [True] * 3)
    torch.testing.assert_close(apart["itm"], itm_loss(logits, batch["match"], own_pairs))
    torch.testing.assert_close(shared["ve"], apart["ve"])
    with pytest.raises(ValueError, match="only when both are fine-tuned, not ve, vqa"):
        FinetuneStep(model, ("ve", "vqa"), ve_trains_itm=True)


def test_config_round_trip_and_presets(tmp_path: Path) -> None:
    config = demo_config(cmap_mode="mix", num_answers=17)
    config.save(tmp_path / "c.json")
    assert CMALConfig.load(tmp_path / "c.json") == config
    paper = paper_config()
    assert (paper.layers, paper.hidden, paper.heads, paper.max_regions, paper.max_tokens) == (
        12,
        768,
        12,
        36,
        40,
    )
    with pytest.raises(ValueError, match="cmap_mode"):
        demo_config(cmap_mode="blend")
    with pytest.raises(ValueError, match="unknown CMAL config fields: colour"):
        CMALConfig.from_json({**json.loads((tmp_path / "c.json").read_text()), "colour": 1})


def test_safetensors_round_trip_gives_identical_outputs(tiny_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, tokenizer, vocab = tiny_world
    model = tiny_model(tiny_world).eval()
    _, fine = batches(tiny_world)
    save_cmal(model, tmp_path, tokenizer, vocab)
    (tmp_path / "labels.json").write_text(
        json.dumps({"tags": vocab.tags, "attributes": vocab.attributes, "answers": vocab.answers})
    )
    loaded, tok2, vocab2 = load_cmal(tmp_path)
    with torch.no_grad():
        a = model.tasks(encode_batch(model, fine).sequence, fine["region_valid"])
        b = loaded.tasks(encode_batch(loaded, fine).sequence, fine["region_valid"])
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert tok2.get_vocab() == tokenizer.get_vocab() and vocab2.answers == vocab.answers
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))


def test_forward_matches_encode_then_tasks(tiny_world) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model(tiny_world).eval()
    _, fine = batches(tiny_world)
    with torch.no_grad():
        direct = model(
            fine["input_ids"], fine["attention_mask"], fine["region_boxes"], fine["region_features"],
            fine["region_valid"], fine["swap_token"], fine["swap_region"], fine["swap_valid"],
        )  # fmt: skip
        staged = model.tasks(encode_batch(model, fine).sequence, fine["region_valid"])
    for x, y in zip(direct, staged, strict=True):
        assert torch.allclose(x, y)
    assert direct.rec_logits[~fine["region_valid"]].max() <= -1e4 + 1


def test_load_partial_blends_towards_the_fresh_weights(tiny_world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, tokenizer, vocab = tiny_world
    trained = tiny_model(tiny_world)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    save_cmal(trained, tmp_path, tokenizer, vocab)
    saved = {k: v.clone() for k, v in trained.state_dict().items()}
    for blend in (1.0, 0.25, 0.0):
        model = tiny_model(tiny_world)  # the same fresh initialisation each time (seed 0)
        fresh = {k: v.clone() for k, v in model.state_dict().items()}
        assert load_partial(model, tmp_path, blend) == []
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, blend * saved[k] + (1 - blend) * fresh[k])
    with pytest.raises(ValueError, match="blend"):
        load_partial(tiny_model(tiny_world), tmp_path, 1.5)


def test_continued_fine_tuning_keeps_each_answer_s_row_when_the_vocabulary_reorders(  # type: ignore[no-untyped-def]
    tiny_world, tmp_path: Path
) -> None:
    # the answer vocabulary is ordered by frequency in the training file, so new data can reorder it
    _, _, tokenizer, vocab = tiny_world
    assert len(vocab.answers) >= 3
    trained = tiny_model(tiny_world)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    save_cmal(trained, tmp_path, tokenizer, vocab)
    old = list(vocab.answers)
    new = [old[2], old[0], "an answer the checkpoint never had", *old[3:]]
    model = tiny_model(tiny_world)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_partial(model, tmp_path, answers=(old, new)) == []
    state = model.state_dict()
    for key in VQA_OUTPUT:
        for i, answer in enumerate(new):
            expected = trained.state_dict()[key][old.index(answer)] if answer in old else fresh[key][i]
            torch.testing.assert_close(state[key][i], expected)
    # an untouched layer still loads as is; without the answers the rows stay where they were
    torch.testing.assert_close(
        state["vqa_head.mlp.net.0.weight"], trained.state_dict()["vqa_head.mlp.net.0.weight"]
    )
    by_position = tiny_model(tiny_world)
    load_partial(by_position, tmp_path)
    torch.testing.assert_close(by_position.state_dict()[VQA_OUTPUT[0]], trained.state_dict()[VQA_OUTPUT[0]])


def test_grounding_scorer_has_no_bias_and_older_checkpoints_with_one_still_load(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from cmal.model.io import load_cmal
    from cmal.model_dir import CMAL_WEIGHTS as WEIGHTS

    fresh, _, _ = load_cmal(tiny_model_dir)
    assert "rec_head.mlp.net.3.bias" not in fresh.state_dict()
    older = tmp_path / "older"
    shutil.copytree(tiny_model_dir, older)
    state = load_file(str(older / WEIGHTS))
    state["rec_head.mlp.net.3.bias"] = torch.tensor([-0.1085])  # as the demo model's checkpoint has
    save_file(state, str(older / WEIGHTS))
    loaded, _, _ = load_cmal(older)
    for key, value in fresh.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_validation_steps_run_alone(tiny_world) -> None:  # type: ignore[no-untyped-def]
    from cmal.data.language import GEOMETRY_CONCEPTS
    from cmal.tasks import TASK_IDS
    from cmal.train.examples import Masking
    from cmal.train.run import finetune_metrics, pretrain_metrics

    folder, table, tokenizer, vocab = tiny_world
    model = tiny_model(tiny_world)
    val = load_examples(folder, TASK_IDS, table, tokenizer, vocab)
    fine = finetune_metrics(model, val, table, vocab, TASK_IDS)
    assert set(fine) == {f"val_{t}" for t in TASK_IDS} | {"score"}
    assert all(0.0 <= fine[f"val_{t}"] <= 1.0 for t in TASK_IDS)
    assert fine["score"] == pytest.approx(sum(fine[f"val_{t}"] for t in TASK_IDS) / len(TASK_IDS))

    captions = load_examples(folder, ("captions", "itm"), table, tokenizer, vocab)
    geometry = {i: c for w, c in GEOMETRY_CONCEPTS.items() if (i := tokenizer.token_to_id(w)) is not None}
    args = (captions, table, Masking(focus_ids=frozenset(geometry)), geometry, 0, tokenizer.get_vocab_size())
    pre = pretrain_metrics(PretrainStep(model), *args)
    assert {"val_mlm", "val_itm", "val_amc", "val_total"} <= set(pre) and pre["score"] == -pre["val_total"]
    assert any(k.endswith("_word_accuracy") for k in pre)  # the geometry probe ran
    assert pretrain_metrics(PretrainStep(model), *args) == pre  # corruption is seeded: same figures


@pytest.mark.parametrize(
    ("changes", "part"),
    [
        ({"slot_geometry": True}, "slot_geometry"),
        ({"cmap_mode": "off", "anchor_markers": True}, "anchor_markers"),
    ],
)
def test_an_added_part_changes_only_anchored_examples_and_adds_to_older_checkpoints(  # type: ignore[no-untyped-def]
    tiny_world, tmp_path: Path, changes: dict[str, object], part: str
) -> None:
    """The box embedding of filled slots (swap mode) and the anchor markers (CMAP off) change only
    the examples with an anchor pair; a model saved without either gains it, freshly initialised."""
    _, _, tokenizer, vocab = tiny_world
    _, fine = batches(tiny_world)
    anchored = fine["swap_valid"].any(1)
    assert anchored.any() and (~anchored).any()
    model = tiny_model(tiny_world, **changes).eval()
    with torch.no_grad():
        with_part = encode_batch(model, fine).sequence
        setattr(model, part, None)  # the same weights without it
        without = encode_batch(model, fine).sequence
    assert not torch.equal(with_part[anchored], without[anchored])
    assert torch.equal(with_part[~anchored], without[~anchored])
    save_cmal(tiny_model(tiny_world), tmp_path, tokenizer, vocab)
    skipped = load_partial(tiny_model(tiny_world, **changes), tmp_path)
    assert skipped and all(name.startswith(f"{part}.") for name in skipped)
