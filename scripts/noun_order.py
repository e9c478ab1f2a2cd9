"""Relation questions with their two nouns swapped, to see whether a model compares the objects or
reads the answer off the wording.

Usage: .venv/bin/python scripts/noun_order.py DATA OUT
Writes OUT/vqa.jsonl (and links OUT/images): every relation question of DATA/vqa.jsonl asked the
other way round ("is the red circle left of the blue square?" -> "is the blue square left of the
red circle?"), with the answer flipped (the generator asks only about clear relations, so the
reverse of a true one is false). Evaluate with
``cmal evaluate --model M --data OUT --task vqa``: a model that compares the objects scores as
well as on the original questions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from cmal.data.checker import _NP, _REL

QUESTION = re.compile(rf"(?:is ({_NP}) (?:located )?|would you say ({_NP}) is )({_REL}) ({_NP})\?")
FLIP = {"yes": "no", "no": "yes"}


def swapped(question: str) -> str:
    """The question with its two noun phrases exchanged (same template)."""
    m = QUESTION.fullmatch(question)
    if m is None:
        raise ValueError(f"not a relation question: {question!r}")
    first, second = m[1] or m[2], m[4]
    head = "is " if m[1] else "would you say "
    middle = question[m.end(1) : m.start(3)] if m[1] else " is "
    return f"{head}{second}{middle}{m[3]} {first}?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.out / "images").exists():
        os.symlink((args.data / "images").resolve(), args.out / "images")
    rows = []
    for line in (args.data / "vqa.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") == "relation":
            rows.append({**r, "question": swapped(r["question"]), "answers": [FLIP[a] for a in r["answers"]]})
    (args.out / "vqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} swapped relation questions to {args.out / 'vqa.jsonl'}")


if __name__ == "__main__":
    main()
