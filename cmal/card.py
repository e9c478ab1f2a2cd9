"""Write a model directory's card (``README.md``) from its ``metrics.json`` and config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cmal.model_dir import CARD, CMAL_CONFIG, DETECTOR_CONFIG, METRICS, read_json
from cmal.tasks import TASKS

TASK_NAMES = {t.id: t.name for t in TASKS}


def _row(results: dict[str, Any], task: str) -> str:
    r = results.get(task)
    if not r:
        return "–"
    text = f"{r['accuracy']:.3f}"
    if "auc" in r:
        text += f" (AUC {r['auc']:.3f})"
    return text


def _gap(test: dict[str, Any], compositional: dict[str, Any], task: str) -> str:
    if task not in test or task not in compositional:
        return "–"
    return f"{100 * (test[task]['accuracy'] - compositional[task]['accuracy']):.1f}"


def results_table(columns: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per task, one column per named result set, and when both ``test``
    and ``compositional`` are given, the compositional gap in accuracy points."""
    gap = "test" in columns and "compositional" in columns
    head = "| task | " + " | ".join(columns) + (" | gap, points" if gap else "") + " |"
    rule = "| --- |" + " --- |" * (len(columns) + gap)
    rows = []
    for t in TASK_NAMES:
        cells = [_row(c, t) for c in columns.values()]
        if gap:
            cells.append(_gap(columns["test"], columns["compositional"], t))
        rows.append(f"| {TASK_NAMES[t]} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def write_card(model_dir: Path, notes: str) -> Path:
    """Render ``model_dir/README.md``: config summary, results, and the free-form ``notes``."""
    metrics = read_json(model_dir / METRICS)
    config = read_json(model_dir / CMAL_CONFIG)
    detector = read_json(model_dir / DETECTOR_CONFIG)
    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    columns = {k: metrics[k] for k in ("test", "compositional") if k in metrics}
    det = metrics.get("detection", {}).get("test", {})
    held_out = metrics.get("detection", {}).get("compositional") or {}
    lines = [
        f"# {model_dir.name}",
        "",
        "A CMAL vision-language model trained from scratch on the procedural Shapes world.",
        "",
        "## Results (from pixels: detector regions, not ground-truth boxes)",
        "",
        results_table(columns) if columns else "(not evaluated yet)",
        "",
    ]
    if det:
        lines += [
            f"Detector on the test split: recall {det['recall']:.3f}, precision {det['precision']:.3f} "
            f"at IoU 0.5, tag accuracy {det['tag_accuracy']:.3f}, "
            f"attribute accuracy {det['attribute_accuracy']:.3f}."
            + (
                f" On colour–shape pairs never seen in training (compositional split): recall "
                f"{held_out['recall']:.3f}, tag accuracy {held_out['tag_accuracy']:.3f}, attribute accuracy "
                f"{held_out['attribute_accuracy']:.3f}."
                if held_out
                else ""
            ),
            "",
        ]
    lines += [
        "## Architecture",
        "",
        f"- Detector: CenterNet-style, {detector['max_detections']} regions, "
        f"{detector['feature_dim']}-d features, input {detector['image_size']}×{detector['image_size']}.",
        f"- CMAL: UMSE width {config['umse_hidden']} × {config['umse_layers']} layer(s); unified encoder "
        f"{config['layers']} layers, hidden {config['hidden']}, {config['heads']} heads; "
        f"CMAP mode `{config['cmap_mode']}`"
        + (", anchor markers" if config.get("anchor_markers") else "")
        + f"; {config['num_answers']} VQA answers; "
        f"vocabulary {config['vocab_size']} word pieces.",
        f"- Weights: {size / 1e6:.1f} MB of safetensors.",
        "",
        notes.strip(),
        "",
    ]
    path = model_dir / CARD
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
