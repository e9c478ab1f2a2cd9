"""End-to-end adaptation: the detector's backbone and region-feature path trained through the task
losses of fine-tuning (``cmal train finetune --adapt-detector``).

Fine-tuning normally reads frozen region features from a cache. Here every batch runs its images
through the detector with gradients instead. The proposals a batch is trained on (which cells are
regions, hence the slots the text is anchored to) are fixed by one pass of the starting detector, so
the examples, anchors and labels stay those of the region table; only the features move.

The detection heads (centre heatmap, box size and offset, tag and attribute classifiers) either

* stay frozen, and the adapted backbone is held to the starting detector's heatmap and boxes by a
  distillation loss, so its region proposals stay what they were (no boxes needed); or
* train on the folder's ``objects.jsonl`` with the detector's own losses, when the folder has one
  and every label in it is in the detector's vocabulary ("kept" heads).

BatchNorm keeps its running statistics (the detector stays in eval mode); its scale and shift
train. The adapted detector keeps the output contract, so export and serving are unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn
from tqdm import tqdm

from cmal.data.formats import load_objects
from cmal.detector.data import load_detection_set
from cmal.detector.io import load_detector
from cmal.detector.losses import detector_losses
from cmal.detector.model import Detector, DetectorOutput, gather_cells
from cmal.detector.targets import build_targets
from cmal.imaging import load_rgb, to_input
from cmal.model_dir import Vocabularies
from cmal.regions import RegionTable, dataset_images
from cmal.train.examples import Example, cap_per_task, load_examples, split_off
from cmal.train.steps import FinetuneStep
from cmal.train.trainer import TrainSettings

Teacher = tuple[torch.Tensor, torch.Tensor]  # heatmap logits (N, 1, h, w), box maps (N, 4, h, w)
HEADS = ("heat", "box", "tag_head", "attribute_head")
"""The detection heads: frozen unless boxes are given."""
DISTILL_WEIGHT = 1.0


class FolderImages:
    """Every image of a dataset folder, resized to the detector input and held as uint8."""

    def __init__(self, folder: Path, image_size: int, progress: bool = True):
        self.paths = dataset_images(folder)
        if not self.paths:
            raise FileNotFoundError(f"{folder}: no dataset files with images found")
        self.pixels = torch.zeros((len(self.paths), 3, image_size, image_size), dtype=torch.uint8)
        sizes = []
        for i, p in enumerate(tqdm(self.paths, desc=f"load {folder.name}", unit="img", disable=not progress)):
            image = load_rgb(p)
            sizes.append(image.size)
            self.pixels[i] = torch.from_numpy(np.round(to_input(image, image_size) * 255).astype(np.uint8))
        self.sizes = np.array(sizes, np.int64)

    def batch(self, rows: torch.Tensor) -> torch.Tensor:
        """Images ``rows`` as float detector input in [0, 1]."""
        return self.pixels[rows].float() / 255.0


@torch.no_grad()
def detect_now(
    detector: Detector, images: FolderImages, batch_size: int = 64
) -> tuple[RegionTable, torch.Tensor, Teacher]:
    """The region table of ``images`` under the detector as it is now, each slot's cell index, and
    the heatmap logits and box maps (what distillation holds an adapted detector to)."""
    was_training = detector.training
    detector.eval()
    outs: list[DetectorOutput] = []
    index, heat, box = [], [], []
    for start in range(0, len(images.paths), batch_size):
        x = images.batch(torch.arange(start, min(start + batch_size, len(images.paths))))
        maps = detector.dense(x)
        outs.append(detector.decode(maps, x.shape[-1], x.shape[-2]))
        index.append(detector.peaks(maps)[1])
        heat.append(maps.heat)
        box.append(torch.cat([maps.size, maps.offset], 1))
    detector.train(was_training)
    boxes, scores, tags, attributes, features, valid = (torch.cat(p).numpy() for p in zip(*outs, strict=True))
    table = RegionTable(
        [str(p) for p in images.paths], boxes, scores, tags, attributes, features, valid, images.sizes
    )
    return table, torch.cat(index), (torch.cat(heat), torch.cat(box))


def by_image(examples: Sequence[Example], seed: int, epoch: int) -> np.ndarray:
    """An epoch's order of ``examples`` with each image's examples next to each other (images and
    the examples of an image shuffled), so a batch runs the detector over few images."""
    rng = np.random.default_rng([seed, epoch])
    rows = np.array([e.row for e in examples])
    rank = rng.permutation(int(rows.max()) + 1 if len(rows) else 0)
    return np.lexsort((rng.random(len(rows)), rank[rows]))


class RegionAdapter(nn.Module):
    """The detector inside a fine-tuning step: region features of a batch's images, with gradients.

    Args:
        detector: the starting detector (trained in place).
        images: the training folder's images, rows as in ``table``.
        index: each slot's cell (N, K), from `detect_now` with the starting detector.
        table: the starting detector's region table of ``images``.
        teacher: its heatmap logits and box maps (`detect_now`), kept when the heads are frozen.
        objects_dir: a folder whose ``objects.jsonl`` trains the heads too (None: heads frozen).
        tags, attributes: the detector's vocabularies (for ``objects_dir``).
    """

    def __init__(
        self,
        detector: Detector,
        images: FolderImages,
        index: torch.Tensor,
        table: RegionTable,
        teacher: Teacher,
        objects_dir: Path | None = None,
        tags: Sequence[str] = (),
        attributes: Sequence[str] = (),
    ):
        super().__init__()
        self.detector = detector
        self.images = images
        self.index = index
        self.valid = torch.from_numpy(table.valid)
        self.boxes = None
        if objects_dir is not None:
            size = detector.config.image_size
            data = load_detection_set(objects_dir, size, list(tags), list(attributes), progress=False)
            row = {str(p): i for i, p in enumerate(images.paths)}
            order = [row.get(str(r.image), -1) for r in load_objects(objects_dir / "objects.jsonl")]
            self.boxes = {r: (data.boxes[i], data.tags[i], data.attributes[i]) for i, r in enumerate(order)}
            missing = len(images.paths) - len(set(self.boxes) - {-1})
            if missing:
                raise ValueError(f"{objects_dir}/objects.jsonl lacks {missing} of the folder's images")
        for name in HEADS:
            getattr(detector, name).requires_grad_(self.boxes is not None)
        self.teacher = teacher if self.boxes is None else None

    def train(self, mode: bool = True) -> RegionAdapter:
        """Train mode for the module, but the detector's BatchNorm keeps its running statistics."""
        super().train(mode)
        self.detector.eval()
        return self

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image rows (B,) -> region features (B, K, D) at the fixed proposals, and the detector's loss."""
        unique, inverse = torch.unique(rows, return_inverse=True)
        maps = self.detector.dense(self.images.batch(unique))
        features = gather_cells(maps.features, self.index[unique]) * self.valid[unique].unsqueeze(-1).float()
        if self.teacher is not None:
            heat, box = self.teacher[0][unique], self.teacher[1][unique]
            weight = torch.sigmoid(heat)  # boxes matter where there is an object
            box_loss = (
                weight * (torch.cat([maps.size, maps.offset], 1) - box).abs()
            ).sum() / weight.sum().clamp(min=1.0)
            loss = F.mse_loss(maps.heat, heat) + box_loss
        else:
            assert self.boxes is not None
            picked = [self.boxes[int(r)] for r in unique]
            config = self.detector.config
            targets = build_targets(
                [p[0] for p in picked],
                [p[1] for p in picked],
                [p[2] for p in picked],
                config.image_size,
                config.stride,
            )
            loss = detector_losses(maps, targets)["total"]
        return features[inverse], DISTILL_WEIGHT * loss


class AdaptStep(nn.Module):
    """A fine-tuning step whose region features come from the detector being adapted: the task
    losses plus the detector's own (``detector``: distillation, or detection with boxes)."""

    def __init__(self, step: FinetuneStep, adapter: RegionAdapter):
        super().__init__()
        self.step = step
        self.adapter = adapter

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Collated batch -> ``total``, each task's loss and ``detector``."""
        features, detector_loss = self.adapter(batch["image_row"])
        losses = self.step({**batch, "region_features": features})
        tasks = {k: v for k, v in losses.items() if k != "total"}
        return {"total": losses["total"] + detector_loss, **tasks, "detector": detector_loss}


@dataclass
class Adaptation:
    """What end-to-end adaptation trains on (`cmal.train.adapt`)."""

    adapter: RegionAdapter
    table: RegionTable  # the starting detector's regions of the training images
    examples: list[Example]
    validation: Callable[[], tuple[RegionTable, list[Example]]]  # re-detected with the detector as it is


def check_adapt_settings(s: TrainSettings) -> None:
    """Reject settings that contradict how the detector is (or is not) adapted, before any work."""
    if s.detector_lr_scale != 1.0 and not (s.adapt_detector and s.detector_lr_scale > 0):
        raise ValueError("--detector-lr-scale must be positive and needs --adapt-detector")
    if s.adapt_detector and s.data_share < 1.0:
        raise ValueError("a share of the training data (--data-share) needs a frozen detector")


def adapt_setup(
    out_dir: Path,
    train_dir: Path,
    val_dir: Path | None,
    tasks: Sequence[str],
    tokenizer: Tokenizer,
    vocab: Vocabularies,
    labels: dict[str, Any],
    s: TrainSettings,
    progress: bool,
) -> Adaptation:
    """Set up end-to-end adaptation of the detector in ``out_dir`` (see `cmal.train.adapt`): heads
    trained on ``objects.jsonl`` when the training folder has one, else frozen and distilled."""
    detector, _, _ = load_detector(out_dir)
    images = FolderImages(train_dir, detector.config.image_size, progress)
    table, index, teacher = detect_now(detector, images)
    examples = load_examples(train_dir, tasks, table, tokenizer, vocab)
    val_images = FolderImages(val_dir, detector.config.image_size, progress) if val_dir else images
    if val_dir is None:
        examples, _ = split_off(examples, 0.05, s.holdout_seed)
    boxes = train_dir if (train_dir / "objects.jsonl").is_file() else None
    try:
        adapter = RegionAdapter(
            detector, images, index, table, teacher, boxes, labels["tags"], labels["attributes"]
        )
    except ValueError as e:
        raise ValueError(
            f"{e}; to adapt to new classes, first fine-tune the detector on the boxes with "
            "`cmal train detector --init MODEL_DIR`"
        ) from None
    if progress:
        logging.getLogger(__name__).info(
            "adapting the detector end to end; heads %s", "trained on objects.jsonl" if boxes else "frozen"
        )

    def validation() -> tuple[RegionTable, list[Example]]:
        now, _, _ = detect_now(detector, val_images)
        folder = val_dir or train_dir
        val = load_examples(folder, tasks, now, tokenizer, vocab, uid_offset=10**8 if val_dir else 0)
        if val_dir is None:
            _, val = split_off(val, 0.05, s.holdout_seed)
        return now, cap_per_task(val)

    return Adaptation(adapter, table, examples, validation)
