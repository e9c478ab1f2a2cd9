"""Accuracy broken down by question / statement / expression kind, to see what a model has not learned.

Usage: .venv/bin/python scripts/errors_by_kind.py MODEL_DIR DATA_DIR [--output FILE]
Reads the Shapes files' extra ``kind`` fields (itm, vqa, rec; ITM kinds split into matching
``-pos`` and non-matching ``-neg`` pairs); referring expressions of files written without one are
classified from their words as plain, relational, superlative or non-extreme. Prints one line
per task; ``--output`` also writes ``{task: {kind: {"accuracy": a, "n": n}}}`` (the demo model's
card shows it). ``--relation-anchors`` also splits VQA relation questions by how many of their two
named objects have an anchor (``relation/anchored-N``: a shape word whose region is unambiguous;
"the red thing" has none), the split of the card's relation ladder. ``--listing-changes`` also
splits non-matching listings ("a scene with three shapes: …") by what makes them false
(``listing-neg/colour``, ``/shape``, ``/size``: changing that field of one item makes the listing
true; ``/several`` when more than one field would, ``/other`` when none would), and those made false
by a colour into ``listing-neg/colour/new`` (a colour the scene does not have, or one of its
colours left out) and ``/swapped`` (the scene's colours, on other shapes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cmal.data.checker import Scene, assignable, listing_items
from cmal.evaluate import predict, region_row
from cmal.model.io import load_cmal
from cmal.regions import detect_folder
from cmal.tasks import Gold, get_task
from cmal.train.examples import load_examples


def rec_kind(expression: str) -> str:
    """The kind of a referring expression written before rec.jsonl had a ``kind`` field."""
    if " and " in expression:
        return "non-extreme"
    if any(w in expression for w in ("most", "highest", "lowest")):
        return "superlative"
    if any(w in expression for w in (" of the ", " above the ", " below the ", " under the ")):
        return "relational"
    return "plain"


LISTING_FIELDS = ("colour", "shape", "size")  # named alike in the checker's noun phrases and objects


def listing_change(text: str, objects: Mapping[str, Any]) -> str:
    """What makes a non-matching listing false, given its image's ``objects.jsonl`` record: the one
    field (colour, shape or size) whose change in one item makes it true, ``several`` or ``other``."""
    scene = Scene(objects)
    items = listing_items(text)
    if items is None:
        raise ValueError(f"not a listing: {text!r}")
    fields = [f for f in LISTING_FIELDS if _true_after_changing(items, scene, f)]
    return fields[0] if len(fields) == 1 else "several" if fields else "other"


def colour_change_kind(text: str, objects: Mapping[str, Any]) -> str:
    """For a listing made false by one colour: ``new`` when its colours are not the scene's (it names
    a colour no object wears, or leaves one unnamed: a bag of words can tell), ``swapped`` when they
    are (only binding each colour to its shape can tell)."""
    items = listing_items(text) or []
    named = {item.colour for item in items if item.colour}
    return "swapped" if named == {o.colour for o in Scene(objects).objects} else "new"


def _true_after_changing(items: list[Any], scene: Scene, field: str) -> bool:
    """Whether giving one item's ``field`` the value of some object's makes the listing true."""
    for i, item in enumerate(items):
        if getattr(item, field) is None:  # the item does not say (a listing without sizes)
            continue
        for value in {getattr(o, field) for o in scene.objects}:
            changed = [*items[:i], dataclasses.replace(item, **{field: value}), *items[i + 1 :]]
            if assignable(changed, scene.objects):
                return True
    return False


def by_kind(
    model_dir: Path, data: Path, relation_anchors: bool = False, listing_changes: bool = False
) -> dict[str, dict[str, dict[str, float]]]:
    model, tok, vocab = load_cmal(model_dir)
    table = detect_folder(model_dir, data, progress=False)
    scenes = {}
    if listing_changes:
        objects = [json.loads(line) for line in (data / "objects.jsonl").read_text().splitlines()]
        scenes = {o["image"]: o for o in objects}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for task in ("itm", "vqa", "rec"):
        if not (data / f"{task}.jsonl").exists():
            continue  # a folder with some of the task files
        records = [json.loads(line) for line in (data / f"{task}.jsonl").read_text().splitlines()]
        examples = load_examples(data, (task,), table, tok, vocab)
        out = predict(model, examples, table)
        scored = get_task(task)
        acc: dict[str, list[bool]] = defaultdict(list)
        for i, (r, e) in enumerate(zip(records, examples, strict=True)):
            if task == "itm":
                key = f"{r['kind']}-{'pos' if e.match else 'neg'}"
            elif task == "vqa":
                key = r["kind"]
            else:
                key = r.get("kind") or rec_kind(r["expression"])
            # the same scoring as `cmal evaluate`
            gold = Gold.of(vocab.answers, region_row(table, e.row), out["itm"][i], vocab.decline_below)
            hit = scored.hit(out[task][i], e.truth, gold)
            acc[key].append(hit)
            if relation_anchors and key == "relation":
                acc[f"relation/anchored-{min(len(e.anchors), 2)}"].append(hit)
            if listing_changes and key == "listing-neg":
                scene = scenes[r["image"]]
                change = listing_change(r["text"], scene)
                acc[f"listing-neg/{change}"].append(hit)
                if change == "colour":
                    acc[f"listing-neg/colour/{colour_change_kind(r['text'], scene)}"].append(hit)
        results[task] = {k: {"accuracy": float(np.mean(v)), "n": len(v)} for k, v in sorted(acc.items())}
    return results


def model_and_data_parser(doc: str | None, output: str) -> argparse.ArgumentParser:
    """The command line of a script reading MODEL_DIR DATA_DIR [--output FILE] (``output``: its help)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--output", type=Path, help=output)
    return parser


def main() -> None:
    parser = model_and_data_parser(__doc__, "write the breakdown as JSON")
    parser.add_argument(
        "--relation-anchors",
        action="store_true",
        help="also split VQA relation questions by anchored objects",
    )
    parser.add_argument(
        "--listing-changes",
        action="store_true",
        help="also split non-matching ITM listings by the field that makes them false",
    )
    args = parser.parse_args()
    results = by_kind(args.model, args.data, args.relation_anchors, args.listing_changes)
    for task, kinds in results.items():
        print(task, "  ".join(f"{k} {r['accuracy']:.2f} ({r['n']})" for k, r in kinds.items()))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
