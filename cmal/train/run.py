"""Entry points: CMAL pre-training and multi-task fine-tuning into a model directory."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from cmal.calibrate import calibrate_dir, can_calibrate
from cmal.data.formats import load
from cmal.data.language import GEOMETRY_CONCEPTS
from cmal.data.vocab import COLOUR_WORDS, synonym_table
from cmal.detector.config import DetectorConfig
from cmal.detector.io import copy_detector, save_detector
from cmal.evaluate import evaluate_examples
from cmal.model.cmal import CMAL
from cmal.model.config import CMALConfig, demo_config
from cmal.model.io import has_cmal, load_grown_vocabulary, load_partial, save_cmal
from cmal.model_dir import (
    CMAL_CONFIG,
    DETECTOR_CONFIG,
    LABELS,
    Vocabularies,
    read_json,
    update_metrics,
)
from cmal.regions import RegionTable, detect_folder
from cmal.tasks import TASK_IDS
from cmal.text.sizes import OBJECTS, size_vocabulary
from cmal.text.tokenizer import add_words, load_tokenizer, train_tokenizer
from cmal.train.adapt import AdaptStep, adapt_setup, by_image, check_adapt_settings
from cmal.train.distributed import DistInfo, barrier, init_distributed, shutdown
from cmal.train.examples import (
    TEXT_FIELD,
    Example,
    Masking,
    answer_vocabulary,
    cap_per_task,
    collate,
    load_examples,
    share_of_images,
    split_off,
)
from cmal.train.steps import FinetuneStep, PretrainStep, check_ve_trains_itm, geometry_word_hits
from cmal.train.trainer import RECORDED_FINETUNE_SETTINGS, TrainSettings, fit

log = logging.getLogger(__name__)
PRETRAIN_TASKS = ("captions", "itm")


def _start(detector_src: Path, out_dir: Path, seed: int) -> tuple[DistInfo, DetectorConfig, dict[str, Any]]:
    """Join the process group, seed, put the detector into ``out_dir`` (main process) and read it back."""
    dist = init_distributed()
    torch.manual_seed(seed)
    if dist.main:
        copy_detector(detector_src, out_dir)
    barrier(dist)
    return dist, DetectorConfig.load(out_dir / DETECTOR_CONFIG), read_json(out_dir / LABELS)


def _corpus(folder: Path) -> list[str]:
    texts = []
    for task, field in TEXT_FIELD.items():
        path = folder / f"{task}.jsonl"
        if path.is_file():
            texts += [getattr(r, field) for r in load(path, task)]
    return texts


def _synonyms(tags: Sequence[str]) -> dict[str, str]:
    table = {w: c for w, c in synonym_table().items() if c in tags}
    table.update({t: t for t in tags})
    return dict(sorted(table.items()))


def _attribute_words(attributes: Sequence[str]) -> dict[str, str]:
    """Surface word -> attribute for the detector's attributes (e.g. "violet" -> "purple")."""
    return dict(sorted((w, a) for a in attributes for w in COLOUR_WORDS.get(a, (a,))))


def _datasets(
    model_dir: Path,
    train_dir: Path,
    val_dir: Path | None,
    tasks: Sequence[str],
    tokenizer: Tokenizer,
    vocab: Vocabularies,
    holdout_seed: int,
    progress: bool,
) -> tuple[RegionTable, list[Example], RegionTable, list[Example]]:
    """Training and validation examples with their region tables (validation: ``val_dir``, or 5%
    held out of the training folder), validation capped at VAL_CAP examples per task."""
    table = detect_folder(model_dir, train_dir, progress=progress)
    examples = load_examples(train_dir, tasks, table, tokenizer, vocab)
    if val_dir is not None:
        val_table = detect_folder(model_dir, val_dir, progress=progress)
        val = load_examples(val_dir, tasks, val_table, tokenizer, vocab, uid_offset=10**8)
    else:
        val_table = table
        examples, val = split_off(examples, 0.05, holdout_seed)
    return table, examples, val_table, cap_per_task(val)


def _shape_config(
    base: CMALConfig,
    tokenizer: Tokenizer,
    vocab: Vocabularies,
    det: DetectorConfig,
    changes: dict[str, Any] | None = None,
) -> CMALConfig:
    """``base`` sized to the tokenizer, vocabularies and detector (plus any ``changes``)."""
    return base.replace(
        vocab_size=tokenizer.get_vocab_size(),
        num_concepts=len(vocab.tags),
        region_feature_dim=det.feature_dim,
        max_regions=det.max_detections,
        num_answers=max(1, len(vocab.answers)),
        **(changes or {}),
    )


def pretrain(
    data_dir: Path,
    out_dir: Path,
    detector_dir: Path,
    val_dir: Path | None = None,
    config: CMALConfig | None = None,
    settings: TrainSettings | None = None,
    vocab_size: int = 400,
    progress: bool = True,
) -> dict[str, Any]:
    """Pre-train CMAL (MLM + ITM + AMC, or CMCL) on captions and ITM pairs of ``data_dir``."""
    s = settings or TrainSettings()
    dist, det, labels = _start(detector_dir, out_dir, s.seed)
    tokenizer = train_tokenizer(
        _corpus(data_dir), vocab_size=vocab_size, max_length=(config or demo_config()).max_tokens
    )
    answers = answer_vocabulary(data_dir) if (data_dir / "vqa.jsonl").is_file() else []
    vocab = Vocabularies(
        labels["tags"],
        labels["attributes"],
        answers,
        _synonyms(labels["tags"]),
        _attribute_words(labels["attributes"]),
    )
    config = _shape_config(config or demo_config(), tokenizer, vocab, det)
    model = CMAL(config)
    table, examples, val_table, val = _datasets(
        out_dir, data_dir, val_dir, PRETRAIN_TASKS, tokenizer, vocab, s.holdout_seed, progress and dist.main
    )
    step = PretrainStep(model, s.amc_weight, s.plain_pass)
    geometry = {i: c for w, c in GEOMETRY_CONCEPTS.items() if (i := tokenizer.token_to_id(w)) is not None}
    masking = Masking(
        swap_fraction=s.swap_fraction,
        false_swap=s.false_swap,
        focus_probability=s.geometry_mlm,
        focus_ids=frozenset(geometry),
    )

    def make_batch(batch: Sequence[Example], epoch: int) -> dict[str, torch.Tensor]:
        return collate(
            batch,
            table,
            pretrain=True,
            seed=s.seed,
            epoch=epoch,
            masking=masking,
            vocab_size=config.vocab_size,
        )

    def validate() -> dict[str, Any]:
        return pretrain_metrics(step, val, val_table, masking, geometry, s.seed, config.vocab_size)

    best = fit(
        step, model, examples, make_batch, validate,
        lambda: save_cmal(model, out_dir, tokenizer, vocab),
        out_dir, s, dist, "pretrain", progress,
    )  # fmt: skip
    if dist.main:
        update_metrics(
            out_dir,
            "pretrain",
            {
                **best,
                "objective": config.objective,
                "swap_fraction": s.swap_fraction,
                "false_swap": s.false_swap,
                "geometry_mlm": s.geometry_mlm,
                "plain_pass": s.plain_pass,
                "data": str(data_dir),
            },
        )
    shutdown(dist)
    return best


def finetune_metrics(
    model: CMAL, val: Sequence[Example], table: RegionTable, vocab: Vocabularies, tasks: Sequence[str]
) -> dict[str, Any]:
    """Fine-tuning's validation: ``val_<task>`` accuracy per task and their mean as ``score``
    (the trainer keeps the checkpoint with the best score)."""
    results = evaluate_examples(model, val, table, vocab, tasks)
    metrics: dict[str, Any] = {f"val_{t}": float(r["accuracy"]) for t, r in results.items()}
    metrics["score"] = float(np.mean([r["accuracy"] for r in results.values()]))
    return metrics


def _pretrain_batches(
    part: Sequence[Example], table: RegionTable, masking: Masking, seed: int, vocab_size: int
) -> Iterator[tuple[Sequence[Example], dict[str, torch.Tensor]]]:
    """Validation batches of 128 with pre-training corruption drawn as in epoch 0."""
    for start in range(0, len(part), 128):
        chunk = part[start : start + 128]
        batch = collate(
            chunk, table, pretrain=True, seed=seed, epoch=0, masking=masking, vocab_size=vocab_size
        )
        yield chunk, batch


@torch.no_grad()
def pretrain_metrics(
    step: PretrainStep,
    val: Sequence[Example],
    table: RegionTable,
    masking: Masking,
    geometry: dict[int, str],
    seed: int,
    vocab_size: int,
) -> dict[str, Any]:
    """Pre-training's validation: each loss averaged over ``val`` (``val_<loss>``; ``score`` is
    minus the total), and how often a masked size or position word of the validation captions is
    recovered with the right meaning (``val_<kind>_word_accuracy``; ``geometry``: token id ->
    concept)."""
    step.eval()
    sums: dict[str, float] = {}
    n = 0
    for part, batch in _pretrain_batches(val, table, masking, seed, vocab_size):
        for k, v in step(batch).items():
            sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + float(v) * len(part)
        n += len(part)
    metrics: dict[str, Any] = {k: v / max(n, 1) for k, v in sums.items()}
    metrics["score"] = -metrics["val_total"]
    # the geometry probe masks every size / position word of the validation captions, nothing else
    probe = replace(masking, mlm_probability=0.0, focus_probability=1.0)
    captions = [ex for ex in val if ex.task == "captions"]
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for _, batch in _pretrain_batches(captions, table, probe, seed, vocab_size):
        for kind, (r, t) in geometry_word_hits(step, batch, geometry).items():
            right[kind] += r
            total[kind] += t
    metrics.update({f"val_{kind}_word_accuracy": right[kind] / t for kind, t in total.items()})
    return metrics


# what fine-tuning may change in a pre-trained model: the CMAP mode, the dropout rate, and adding the
# slot geometry embedding or the anchor markers (their weights start fresh)
ADDABLE = ("cmap_mode", "slot_geometry", "anchor_markers", "dropout")


def _check_fixed_architecture(init_dir: Path, base: CMALConfig, changes: dict[str, Any]) -> None:
    """A pre-trained model's shape (``base``) is fixed: fine-tuning may change only what ``ADDABLE`` names."""
    reshaped = {k: v for k, v in changes.items() if k not in ADDABLE and getattr(base, k) != v}
    if reshaped:
        raise ValueError(
            f"{init_dir} is a pre-trained model with "
            f"{', '.join(f'{k}={getattr(base, k)}' for k in reshaped)}; it cannot be fine-tuned with "
            f"{', '.join(f'{k}={v}' for k, v in reshaped.items())}"
            " (to change it, start from a folder holding only a detector)"
        )


def finetune(
    init_dir: Path,
    tasks: Sequence[str],
    train_dir: Path,
    val_dir: Path | None,
    out_dir: Path,
    settings: TrainSettings | None = None,
    config_changes: dict[str, Any] | None = None,
    vocab_size: int = 400,
    progress: bool = True,
    detector_dir: Path | None = None,
) -> dict[str, Any]:
    """Multi-task fine-tuning of ``tasks`` from ``init_dir`` (a pre-trained model directory, or one
    holding only a detector: then CMAL starts from random weights — the no-pre-training baseline),
    with ``detector_dir``'s detector instead of ``init_dir``'s when given."""
    unknown = set(tasks) - set(TASK_IDS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {', '.join(TASK_IDS)}; got {', '.join(tasks)}")
    tasks = tuple(t for t in TASK_IDS if t in tasks)
    s = settings or TrainSettings()
    check_adapt_settings(s)
    check_ve_trains_itm(tasks, s.ve_trains_itm)  # before any work
    pretrained = has_cmal(init_dir)
    base = CMALConfig.load(init_dir / CMAL_CONFIG) if pretrained else demo_config()
    if pretrained:
        _check_fixed_architecture(init_dir, base, config_changes or {})
    dist, det, labels = _start(detector_dir or init_dir, out_dir, s.seed)
    new_words: dict[str, list[int]] = {}  # words the tokenizer gains (a pre-trained start only)
    if pretrained:
        tokenizer: Tokenizer = load_tokenizer(init_dir)
        old = Vocabularies.load(init_dir)
        # new detector classes (`cmal train detector --init`) are their own words: texts naming them anchor
        synonyms = {**{t: t for t in labels["tags"]}, **old.synonyms}
        attribute_words = {**{a: a for a in labels["attributes"]}, **old.attribute_words}
        if not old.attribute_words:  # a model trained without attribute anchors keeps going without
            attribute_words = {}
        if s.new_words:  # the training texts' own words, not spelled out in pieces
            tokenizer, new_words = add_words(tokenizer, _corpus(train_dir), s.new_words)
    else:
        tokenizer = train_tokenizer(_corpus(train_dir), vocab_size=vocab_size, max_length=base.max_tokens)
        synonyms = _synonyms(labels["tags"])
        attribute_words = _attribute_words(labels["attributes"])
    answers = answer_vocabulary(train_dir) if "vqa" in tasks else (old.answers if pretrained else [])
    strict = s.strict_attribute_anchors or (pretrained and old.strict_attributes)
    sized = size_vocabulary(train_dir / OBJECTS, old if pretrained else None) if strict else ({}, [])
    size_words, size_classes = sized
    vocab = Vocabularies(
        labels["tags"], labels["attributes"], answers, synonyms, attribute_words, s.skip_ambiguous,
        strict_attributes=strict, size_words=size_words, size_classes=size_classes,
        generic_nouns=list((old.generic_nouns if pretrained else []) or s.generic_nouns),
        group_anchors=s.group_anchors or (pretrained and old.group_anchors),
    )  # fmt: skip
    config = _shape_config(base, tokenizer, vocab, det, config_changes)
    model = CMAL(config)
    if pretrained:
        skipped = load_partial(model, init_dir, s.init_blend, (old.answers, answers))
        if new_words:
            grown = load_grown_vocabulary(model, init_dir, list(new_words.values()))
            skipped = [k for k in skipped if k not in grown]
            if dist.main and progress:
                log.info("%d new words in the tokenizer: %s", len(new_words), ", ".join(new_words))
        if dist.main and skipped and progress:
            fresh = sorted({".".join(k.split(".")[:2]) for k in skipped})
            log.info("initialised from %s; new (randomly initialised): %s", init_dir, ", ".join(fresh))
    task_step = FinetuneStep(model, tasks, s.ve_trains_itm, s.length_groups)
    adapted = None
    if s.adapt_detector:  # regions from the detector as it trains, not from the cache
        adapted = adapt_setup(
            out_dir, train_dir, val_dir, tasks, tokenizer, vocab, labels, s, progress and dist.main
        )
        table, examples = adapted.table, adapted.examples
        val_table, val = table, list[Example]()  # validation re-detects with the detector as it is then
        step: torch.nn.Module = AdaptStep(task_step, adapted.adapter)
        trained: torch.nn.Module = torch.nn.ModuleDict({"cmal": model, "detector": adapted.adapter.detector})
    else:
        table, examples, val_table, val = _datasets(
            out_dir, train_dir, val_dir, tasks, tokenizer, vocab, s.holdout_seed, progress and dist.main
        )
        examples = share_of_images(examples, s.data_share, s.seed)
        step, trained = task_step, model
    answer_ids = {a: i for i, a in enumerate(answers)}

    def make_batch(batch: Sequence[Example], epoch: int) -> dict[str, torch.Tensor]:
        return collate(batch, table, pretrain=False, num_answers=config.num_answers, answer_ids=answer_ids)

    def validate() -> dict[str, Any]:
        now_table, now_val = adapted.validation() if adapted else (val_table, val)
        return finetune_metrics(model, now_val, now_table, vocab, tasks)

    def save() -> None:
        save_cmal(model, out_dir, tokenizer, vocab)
        if adapted:
            save_detector(adapted.adapter.detector, out_dir, labels["tags"], labels["attributes"])

    order = (lambda epoch: by_image(examples, s.seed, epoch)) if adapted else None
    best = fit(
        step, trained, examples, make_batch, validate, save, out_dir, s, dist, "finetune", progress, order
    )
    if dist.main and val_dir is not None and can_calibrate(tasks, val_dir):
        calibrate_dir(out_dir, val_dir, progress=progress)  # when grounding declines, on the best model
    if dist.main:
        update_metrics(
            out_dir,
            "finetune",
            {
                **best,
                "tasks": list(tasks),
                "pretrained": pretrained,
                "init": str(init_dir),
                "detector": str(detector_dir or init_dir),
                "init_blend": s.init_blend if pretrained else None,
                **vocab.anchor_options(),
                **{k: getattr(s, k) for k in RECORDED_FINETUNE_SETTINGS},
                "train_examples": len(examples),
                "new_words": list(new_words),
                "data": str(train_dir),
            },
        )
    shutdown(dist)
    return best
