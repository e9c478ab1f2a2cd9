"""Training and evaluation of the detector (the trainer owns logging and checkpoints)."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cmal.data.found_names import folder_texts
from cmal.data.vocab import COLOURS, SHAPES
from cmal.detector.config import DetectorConfig
from cmal.detector.data import DetectionSet, foreground_detection_set, label_lists, load_detection_set
from cmal.detector.found import (
    FoundKind,
    add_found_words,
    colour_window,
    find_vocabularies,
    found_size_words,
    label_found_classes,
    model_size_classes,
    without_found,
)
from cmal.detector.io import load_detector, run_detector, save_detector
from cmal.detector.losses import detector_losses
from cmal.detector.metrics import detection_metrics
from cmal.detector.model import Detector
from cmal.detector.targets import build_targets
from cmal.model_dir import update_metrics


@dataclass(frozen=True)
class DetectorTrainSettings:
    """Settings of a detector training run (`train_detector`)."""

    epochs: int = 14
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val_fraction: float = 0.1  # held out of --data when no --val folder is given
    threads: int = 0  # torch threads; 0 = all cores


def evaluate_detector(model: Detector, data: DetectionSet, batch_size: int = 64) -> dict[str, float]:
    """Detection metrics of ``model`` on ``data``, boxes compared in original-image pixels."""
    model.eval()
    boxes, scores, tags, attrs, _, valid = (
        t.numpy() for t in run_detector(model, torch.from_numpy(data.images), batch_size)
    )
    pb, ps, pt, pa = [], [], [], []
    for i, (w, h) in enumerate(data.sizes):
        v = valid[i]
        pb.append(boxes[i][v] * np.array([w, h, w, h], np.float32))
        ps.append(scores[i][v])
        pt.append(tags[i][v])
        pa.append(attrs[i][v])
    return detection_metrics(pb, ps, pt, pa, data.original_boxes, data.tags, data.attributes)


CLASS_PATH = ("feature", "colour", "tag_head", "attribute_head")
"""The detector parts only the tag and attribute losses train: frozen on found boxes without classes."""
BOX_SOURCES = ("objects", "foreground")
"""Where detector training takes its boxes: ``objects.jsonl``, or found in the pixels."""


def _score(m: dict[str, float]) -> float:
    return m["recall"] + m["precision"] + m.get("tag_accuracy", 0.0) + m.get("attribute_accuracy", 0.0)


def _flip(
    images: torch.Tensor, boxes: list[np.ndarray], rng: np.random.Generator, size: int
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Random horizontal and vertical flips (labels are flip-invariant; relations are not used here)."""
    out_boxes = []
    flip_h = rng.random(len(images)) < 0.5
    flip_v = rng.random(len(images)) < 0.5
    images = images.clone()
    images[flip_h] = images[flip_h].flip(-1)
    images[flip_v] = images[flip_v].flip(-2)
    for b, fh, fv in zip(boxes, flip_h, flip_v, strict=True):
        b = b.copy()
        if fh:
            b[:, [0, 2]] = size - b[:, [2, 0]]
        if fv:
            b[:, [1, 3]] = size - b[:, [3, 1]]
        out_boxes.append(b)
    return images, out_boxes


def train_detector(
    data_dir: Path,
    out_dir: Path,
    val_dir: Path | None = None,
    settings: DetectorTrainSettings | None = None,
    config: DetectorConfig | None = None,
    progress: bool = True,
    init: Path | None = None,
    keep_old_classes: bool = True,
    boxes_from: str = "objects",
    image_size: int | None = None,
    found_classes: bool = True,
) -> dict[str, float]:
    """Train a detector on ``data_dir/objects.jsonl`` and save the best checkpoint to ``out_dir``.

    With ``init`` (a model directory) training continues from its detector: the architecture and
    weights are kept, and the tag and attribute vocabularies become the old ones plus any new
    classes of the data (``keep_old_classes``) or only the data's classes; a class kept keeps its
    classifier row, a new one starts fresh. A CMAL model in ``init`` is copied along, so
    ``cmal train finetune --init OUT`` starts from it with the new detector (`continue_from`).

    ``boxes_from="foreground"`` (needs ``init``) trains on class-agnostic boxes found in the pixels
    of every image the folders' task files name (`cmal.data.foreground`) instead: the proposals
    (centre heatmap, box size and offset) and the backbone learn where the new domain's objects
    are. With ``found_classes``, the objects' outlines and colours are also grouped into classes
    and named from ``data_dir``'s texts (`cmal.detector.found`): they join ``init``'s
    vocabularies (unnamed ones as ``found-shape-N`` / ``found-colour-N``, replacing any found
    before), their names' other words join its synonyms, and they train the classifiers and
    region features like labelled classes, and the colour path's window widens to reach the pixels
    of hollow objects (`colour_window`); ``metrics.json`` records them. Without, the
    region-feature layers and the classifiers (`CLASS_PATH`) stay frozen and the vocabularies
    stay ``init``'s.

    ``image_size`` (pixels a side) overrides the config's or ``init``'s input size: the weights
    are convolutions and take any size, so a detector can move to images larger than it was
    trained on (a new domain's small objects keep more pixels).

    Validation runs after every epoch; the checkpoint with the best validation score (recall +
    precision + tag and attribute accuracy; recall + precision for foreground boxes without
    classes) is kept.
    Writes ``metrics.json`` (key ``detection``).

    Returns:
        The kept checkpoint's validation metrics.
    """
    s = settings or DetectorTrainSettings()
    if s.threads:
        torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    if boxes_from not in BOX_SOURCES:
        raise ValueError(f"boxes_from must be one of {', '.join(BOX_SOURCES)}, got {boxes_from!r}")
    agnostic = boxes_from == "foreground"
    if agnostic and init is None:
        raise ValueError("boxes found in the pixels have no classes: continue from a detector (--init)")
    if not agnostic and not (data_dir / "objects.jsonl").is_file():
        raise FileNotFoundError(
            f"{data_dir}/objects.jsonl not found; for images without boxes, find them in the pixels: "
            "--init MODEL_DIR --boxes-from foreground"
        )
    start_from = load_detector(init) if init is not None else None
    if start_from is not None:
        known = (start_from[1], start_from[2]) if keep_old_classes or agnostic else ([], [])
        if agnostic and found_classes:  # classes found before are found again, not kept twice
            known = (without_found(known[0]), without_found(known[1]))
        tags, attributes = known if agnostic else label_lists(data_dir, tuple(known[0]), tuple(known[1]))
        base = start_from[0].config
    else:
        tags, attributes = label_lists(data_dir, SHAPES, COLOURS)
        base = config or DetectorConfig()
    resized = {"image_size": image_size} if image_size else {}  # convolutions take any input size
    config = DetectorConfig.from_json({**base.to_json(), **resized})  # checks the size before any work
    kinds: tuple[FoundKind, FoundKind] | None = None
    if agnostic:
        train, described = foreground_detection_set(data_dir, config.image_size, progress)
        val_found = foreground_detection_set(val_dir, config.image_size, progress) if val_dir else None
        if found_classes:
            texts = folder_texts(data_dir)
            tags, attributes, shapes, colours = find_vocabularies(
                described, texts, list(tags), list(attributes)
            )
            kinds = (shapes, colours)
            size_words = found_size_words(described, texts, *kinds, model_size_classes(init))
            for data, d in [(train, described), *([val_found] if val_found else [])]:
                label_found_classes(data, d, *kinds)
        val = val_found[0] if val_found else None
    else:
        train = load_detection_set(data_dir, config.image_size, tags, attributes, progress=progress)
        val = (
            load_detection_set(val_dir, config.image_size, tags, attributes, progress=progress)
            if val_dir
            else None
        )
    window = {"colour_window": colour_window(described, config.stride)} if kinds else {}
    config = DetectorConfig.from_json(
        {**config.to_json(), "num_tags": len(tags), "num_attributes": len(attributes), **window}
    )
    if val is None:
        n_val = max(1, int(len(train.images) * s.val_fraction))
        val = _subset(train, range(len(train.images) - n_val, len(train.images)))
        train = _subset(train, range(len(train.images) - n_val))
    model = Detector(config)
    if start_from is not None and init is not None:
        continue_from(model, *start_from, tags, attributes)
        copy_fusion_model(init, out_dir)
        if kinds:
            add_found_words(out_dir, *kinds, size_words)
    if agnostic and not found_classes:  # no classes: the classifiers and what only they read stay as they are
        for name in CLASS_PATH:
            part = getattr(model, name)
            if part is not None:
                part.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=s.lr, weight_decay=s.weight_decay)
    steps_per_epoch = math.ceil(len(train.images) / s.batch_size)
    total = steps_per_epoch * s.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=total, pct_start=0.15)
    images = torch.from_numpy(train.images)
    best: dict[str, float] | None = None
    history = []
    start = time.perf_counter()
    for epoch in range(1, s.epochs + 1):
        model.train()
        order = rng.permutation(len(images))
        bar = tqdm(range(steps_per_epoch), desc=f"detector epoch {epoch}/{s.epochs}", disable=not progress)
        for step in bar:
            idx = order[step * s.batch_size : (step + 1) * s.batch_size]
            batch, boxes = _flip(images[idx], [train.boxes[i] for i in idx], rng, config.image_size)
            targets = build_targets(
                boxes,
                [train.tags[i] for i in idx],
                [train.attributes[i] for i in idx],
                config.image_size,
                config.stride,
            )
            losses = detector_losses(model.dense(batch.float() / 255.0), targets)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            sched.step()
            if step % 10 == 0:
                bar.set_postfix(
                    {
                        k: f"{v.item():.3f}"
                        for k, v in losses.items()
                        if k in ("total", "heat", "tag", "attribute")
                    }
                )
        metrics = evaluate_detector(model, val)
        if agnostic and not found_classes:  # the boxes have no classes to be accurate about
            metrics = {k: v for k, v in metrics.items() if not k.endswith("_accuracy")}
        metrics["epoch"] = epoch
        history.append(metrics)
        line = ", ".join(
            f"{k} {metrics[k]:.4f}"
            for k in ("recall", "precision", "tag_accuracy", "attribute_accuracy")
            if k in metrics
        )
        tqdm.write(f"epoch {epoch}: val {line}")
        if best is None or _score(metrics) >= _score(best):
            best = metrics
            save_detector(model, out_dir, tags, attributes)
    assert best is not None
    best = {**best, "train_seconds": round(time.perf_counter() - start, 1)}
    record: dict[str, Any] = {**best, "data": str(val_dir or data_dir), "boxes_from": boxes_from}
    if kinds:
        record["found_classes"] = {
            "shape": kinds[0].summary(), "colour": kinds[1].summary(), "size_words": size_words, **window
        }  # fmt: skip
    update_metrics(out_dir, "detection", record)
    (out_dir / "detector_history.json").write_text(json.dumps(history, indent=2) + "\n")
    return best


def continue_from(
    model: Detector,
    old: Detector,
    old_tags: list[str],
    old_attributes: list[str],
    tags: list[str],
    attributes: list[str],
) -> None:
    """Load ``old``'s weights into ``model`` (same architecture, new vocabularies ``tags`` and
    ``attributes``): every shared tensor as is, and each classifier row of a class both know."""
    state = model.state_dict()
    for key, value in old.state_dict().items():
        if state[key].shape == value.shape:
            state[key] = value.clone()
    for head, old_names, names in (
        ("tag_head", old_tags, tags),
        ("attribute_head", old_attributes, attributes),
    ):
        for part in ("weight", "bias"):
            key = f"{head}.{part}"
            fresh = getattr(model, head).state_dict()[part].clone()
            for i, name in enumerate(names):
                if name in old_names:
                    fresh[i] = old.state_dict()[key][old_names.index(name)]
            state[key] = fresh
    model.load_state_dict(state)


def copy_fusion_model(init: Path, out_dir: Path) -> None:
    """Copy ``init``'s CMAL model (if it has one) into ``out_dir``, next to the new detector."""
    from cmal.model_dir import (
        CMAL_CONFIG,
        CMAL_WEIGHTS,
        LABELS,
        SYNONYMS,
        TOKENIZER,
        read_json,
        update_labels,
    )

    if not (init / CMAL_WEIGHTS).is_file() or init.resolve() == out_dir.resolve():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (CMAL_CONFIG, CMAL_WEIGHTS, TOKENIZER, SYNONYMS):
        if (init / name).is_file():
            shutil.copyfile(init / name, out_dir / name)
    kept = {k: v for k, v in read_json(init / LABELS).items() if k not in ("tags", "attributes")}
    update_labels(out_dir, **kept)


def _subset(data: DetectionSet, index: range) -> DetectionSet:
    pick = list(index)
    return DetectionSet(
        data.images[pick],
        [data.boxes[i] for i in pick],
        [data.original_boxes[i] for i in pick],
        [data.sizes[i] for i in pick],
        [data.tags[i] for i in pick],
        [data.attributes[i] for i in pick],
    )


def evaluate_detector_dir(model_dir: Path, data_dir: Path, progress: bool = True) -> dict[str, float]:
    """Load a model directory's detector and score it on ``data_dir/objects.jsonl``."""
    model, tags, attributes = load_detector(model_dir)
    data = load_detection_set(data_dir, model.config.image_size, tags, attributes, progress=progress)
    return evaluate_detector(model, data)
