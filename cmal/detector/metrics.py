"""Detection metrics (numpy only, so they score ONNX outputs as well as PyTorch ones)."""

from __future__ import annotations

import numpy as np

from cmal.imaging import iou


def detection_metrics(
    pred_boxes: list[np.ndarray],
    pred_scores: list[np.ndarray],
    pred_tags: list[np.ndarray],
    pred_attributes: list[np.ndarray],
    gt_boxes: list[np.ndarray],
    gt_tags: list[np.ndarray],
    gt_attributes: list[np.ndarray],
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Recall and precision at IoU >= ``iou_threshold``; tag and attribute accuracy on matches.

    Each argument is a per-image list; predictions hold only the valid detections. Matching is
    greedy by descending score, each ground-truth object matched at most once.
    """
    matched = n_pred = n_gt = tag_ok = attr_ok = 0
    for pb, ps, pt, pa, gb, gt, ga in zip(
        pred_boxes, pred_scores, pred_tags, pred_attributes, gt_boxes, gt_tags, gt_attributes, strict=True
    ):
        n_pred += len(pb)
        n_gt += len(gb)
        if not len(pb) or not len(gb):
            continue
        overlaps = iou(pb, gb)  # (P, G)
        taken = np.zeros(len(gb), bool)
        for p in np.argsort(-ps, kind="stable"):
            candidates = np.where(~taken & (overlaps[p] >= iou_threshold), overlaps[p], -1.0)
            g = int(candidates.argmax())
            if candidates[g] < 0:
                continue
            taken[g] = True
            matched += 1
            tag_ok += int(pt[p] == gt[g])
            attr_ok += int(pa[p] == ga[g])
    return {
        "recall": matched / max(n_gt, 1),
        "precision": matched / max(n_pred, 1),
        "tag_accuracy": tag_ok / max(matched, 1),
        "attribute_accuracy": attr_ok / max(matched, 1),
        "n_images": len(gt_boxes),
        "n_objects": n_gt,
        "n_detections": n_pred,
    }
