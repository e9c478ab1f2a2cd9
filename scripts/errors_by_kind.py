"""Accuracy broken down by question / statement / expression kind, to see what a model has not learned.

Usage: .venv/bin/python scripts/errors_by_kind.py MODEL_DIR DATA_DIR
Reads the Shapes files' extra ``kind`` fields (itm, vqa) and classifies referring expressions as
plain, relational or superlative.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from cmal.evaluate import predict
from cmal.model.io import load_cmal
from cmal.regions import detect_folder
from cmal.train.examples import load_examples


def main(model_dir: Path, data: Path) -> None:
    model, tok, vocab = load_cmal(model_dir)
    table = detect_folder(model_dir, data, progress=False)
    for task in ("itm", "vqa", "rec"):
        records = [json.loads(line) for line in (data / f"{task}.jsonl").read_text().splitlines()]
        examples = load_examples(data, (task,), table, tok, vocab.tags, vocab.synonyms)
        out = predict(model, examples, table)
        acc: dict[str, list[bool]] = defaultdict(list)
        for i, (r, e) in enumerate(zip(records, examples, strict=True)):
            if task == "itm":
                key, ok = f"{r['kind']}-{'pos' if e.match else 'neg'}", (out["itm"][i] > 0) == (e.match > 0.5)
            elif task == "vqa":
                key, ok = r["kind"], vocab.answers[int(out["vqa"][i].argmax())] in e.answers
            else:
                text = r["expression"]
                if any(w in text for w in ("most", "highest", "lowest")):
                    key = "superlative"
                elif any(w in text for w in (" of the ", " above the ", " below the ", " under the ")):
                    key = "relational"
                else:
                    key = "plain"
                ok = int(out["rec"][i].argmax()) == e.label
            acc[key].append(bool(ok))
        print(task, "  ".join(f"{k} {np.mean(v):.2f} ({len(v)})" for k, v in sorted(acc.items())))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
