"""Grounding that can decline: the threshold on the image-text matching head below which an
expression is said to name nothing in the image, chosen on validation data.

The ITM head already scores how well a text fits an image; on a referring expression it tells an
expression that names an object of the image from one that names none ("the big red circle" beside
a small one). `choose_threshold` picks the logit threshold with the best balanced accuracy (the
mean of the share of absent expressions declined and the share of present ones kept), so the
choice does not depend on how many absent expressions the validation folder happens to hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmal.data.formats import load
from cmal.evaluate import predict
from cmal.model.io import load_cmal
from cmal.model_dir import update_labels, update_metrics
from cmal.regions import detect_folder
from cmal.tasks import get_task
from cmal.train.examples import load_examples


def choose_threshold(match_logits: np.ndarray, names_something: np.ndarray) -> dict[str, float]:
    """The decline threshold for ``match_logits`` (N,) of expressions labelled by ``names_something``
    (N,) bool: the midpoint between two neighbouring logits that maximises balanced accuracy.

    Returns:
        ``threshold``, and at it ``declined_absent`` (share of absent expressions declined) and
        ``kept_present`` (share of present ones kept).

    Raises:
        ValueError: the labels are not a mix of both kinds.
    """
    present = np.asarray(names_something, bool)
    if present.all() or not present.any():
        raise ValueError("calibration needs expressions that name an object and ones that name nothing")
    logits = np.asarray(match_logits, np.float64)
    values = np.unique(logits)
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1] + 1.0]])
    declined = logits[None, :] < candidates[:, None]  # (thresholds, N)
    absent_declined = declined[:, ~present].mean(1)
    present_kept = (~declined[:, present]).mean(1)
    best = int(np.argmax(absent_declined + present_kept))
    return {
        "threshold": float(candidates[best]),
        "declined_absent": float(absent_declined[best]),
        "kept_present": float(present_kept[best]),
    }


def can_calibrate(tasks: Sequence[str], folder: Path) -> bool:
    """Whether a fine-tuning of ``tasks`` can calibrate on ``folder``: it trains grounding and the
    folder's rec.jsonl has expressions that name nothing (box null)."""
    rec = get_task("rec")
    path = folder / rec.data_file
    return rec.id in tasks and path.is_file() and any(r.box is None for r in load(path, rec.id))


def calibrate_dir(model_dir: Path, data_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Choose the decline threshold of ``model_dir`` on ``data_dir``'s ``rec.jsonl`` (which needs
    expressions with ``box: null``), write it to ``labels.json`` and the figures to
    ``metrics.json["calibration"]``; returns the figures."""
    model, tokenizer, vocab = load_cmal(model_dir)
    table = detect_folder(model_dir, data_dir, progress=progress)
    examples = load_examples(data_dir, (get_task("rec").id,), table, tokenizer, vocab)
    logits = predict(model, examples, table)["itm"]
    present = np.array([e.truth is not None for e in examples])
    figures: dict[str, Any] = {
        **choose_threshold(logits, present),
        "absent": int((~present).sum()),
        "present": int(present.sum()),
        "data": str(data_dir),
    }
    update_labels(model_dir, grounding_decline_below=figures["threshold"])
    update_metrics(model_dir, "calibration", figures)
    return figures
