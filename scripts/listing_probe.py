"""Which items of a listing a model checks: controlled ITM listings on a Shapes split's images.

Usage: .venv/bin/python scripts/listing_probe.py MODEL_DIR DATA_DIR [--output FILE]

For every image, one true listing of all its objects in a random order ("a scene with three shapes:
a red circle, a blue square and a green cross."), and for each position in it one listing with
that item's colour, and one with its shape, changed to a value the scene does not have (so a bag of
the scene's colours or shapes would already tell). Accuracy is reported by listing length, by what
changed and by where the changed item stands (first, middle, last). The probe is written to a
scratch folder beside the split's images (symlinked) and scored like `cmal evaluate`
(`scripts/errors_by_kind.py`).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from errors_by_kind import by_kind, model_and_data_parser

from cmal.data.domain import get_domain

NUMBER = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
CHANGES = ("colour", "shape")
PLACES = ("first", "middle", "last")


def place(position: int, length: int) -> str:
    """Where item ``position`` of a listing of ``length`` items stands."""
    return "first" if position == 0 else "last" if position == length - 1 else "middle"


def listing(items: list[str]) -> str:
    """A listing statement of ``items`` (two or more), in the generator's wording."""
    return f"a scene with {NUMBER[len(items)]} shapes: " + ", ".join(items[:-1]) + " and " + items[-1] + "."


def probe_records(
    objects: list[dict[str, Any]], colours: list[str], shapes: list[str], seed: int = 0
) -> list[dict[str, Any]]:
    """The probe's ITM records for a split's ``objects.jsonl`` records (kinds ``n<N>-true`` and
    ``n<N>-<change>-<place>``)."""
    rng = random.Random(seed)

    def item(obj: dict[str, Any], colour: str | None = None, shape: str | None = None) -> str:
        c = colour or obj["attribute"]
        return f"{'an' if c[0] in 'aeiou' else 'a'} {c} {shape or obj['tag']}"

    records = []
    for rec in objects:
        objs = rec["objects"]
        n = len(objs)
        if not 1 < n <= max(NUMBER):
            continue
        order = rng.sample(range(n), n)
        items = [item(objs[k]) for k in order]
        records.append({"image": rec["image"], "text": listing(items), "match": True, "kind": f"n{n}-true"})
        unseen = {
            "colour": [c for c in colours if c not in {o["attribute"] for o in objs}],
            "shape": [s for s in shapes if s not in {o["tag"] for o in objs}],
        }
        for pos in range(n):
            for change in CHANGES:
                if not unseen[change]:
                    continue
                changed = list(items)
                value = rng.choice(unseen[change])
                obj = objs[order[pos]]
                changed[pos] = item(obj, colour=value) if change == "colour" else item(obj, shape=value)
                kind = f"n{n}-{change}-{place(pos, n)}"
                record = {"image": rec["image"], "text": listing(changed), "match": False, "kind": kind}
                records.append(record)
    return records


def table(itm: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: accuracy by listing length, change and place (n in brackets)."""
    head = ["items", "true"] + [f"{c} {p}" for c in CHANGES for p in PLACES]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lengths = sorted({int(k.split("-")[0][1:]) for k in itm})
    for n in lengths:
        cells = [str(n)]
        for key in ["true-pos"] + [f"{c}-{p}-neg" for c in CHANGES for p in PLACES]:
            r = itm.get(f"n{n}-{key}")
            cells.append(f"{r['accuracy']:.2f} ({r['n']})" if r else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    args = model_and_data_parser(__doc__, "write {kind: {accuracy, n}} as JSON").parse_args()
    dataset = json.loads((args.data / "dataset.json").read_text())
    domain = get_domain(dataset.get("domain", "shapes"))
    objects = [json.loads(line) for line in (args.data / "objects.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp)
        (probe / "images").symlink_to((args.data / "images").resolve())
        for name in ("objects.jsonl", "dataset.json"):
            (probe / name).write_text((args.data / name).read_text())
        records = probe_records(objects, list(domain.colours), list(domain.shapes))
        (probe / "itm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        itm = by_kind(args.model, probe)["itm"]
    print("\n".join(table(itm)))
    if args.output:
        args.output.write_text(json.dumps(itm, indent=2) + "\n")


if __name__ == "__main__":
    main()
