"""The committed demo model: stored predictions on fixed examples, so any change to preprocessing,
tokenisation, anchors or weights fails CI.

Regenerate the stored file (only after an intended change to the model) with:
    .venv/bin/python tests/integration/test_demo_model.py --regenerate
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from cmal.data.formats import load
from cmal.data.generate import generate_split
from cmal.detector.io import load_detector
from cmal.imaging import load_rgb, to_input
from cmal.inference import ModelFiles, Regions, encode_batch
from cmal.model.io import load_cmal

DEMO = Path(__file__).resolve().parents[2] / "models" / "shapes-demo"
STORED = Path(__file__).resolve().parents[1] / "data" / "demo_expected.json"
FIELDS = {"ve": "hypothesis", "rec": "expression", "vqa": "question", "itm": "text"}


def predictions() -> list[dict]:
    """Run the committed model (PyTorch) on 4 images of a fixed split: 3 examples per task each."""
    detector, _, _ = load_detector(DEMO)
    model, _, _ = load_cmal(DEMO)
    files = ModelFiles.load(DEMO)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_split(folder, seed=4242, num_images=4, split="test", progress=False)
        records = [(t, r) for t in FIELDS for r in load(folder / f"{t}.jsonl", t)[:3]]
        images = sorted({r.image for _, r in records})
        pics = {p: load_rgb(p) for p in images}
        batch = np.stack([to_input(pics[p], files.image_size) for p in images])
        with torch.no_grad():
            det = [t.numpy() for t in detector(torch.from_numpy(batch))]
        regions = Regions.from_outputs(det, [pics[p].size for p in images])
        rows = [images.index(r.image) for _, r in records]
        feeds = encode_batch(files, [getattr(r, FIELDS[t]) for t, r in records], regions.take(rows))
        with torch.no_grad():
            out = model(*(torch.from_numpy(feeds[n]) for n in (
                "input_ids", "attention_mask", "region_boxes", "region_features", "region_valid",
                "anchor_token", "anchor_region", "anchor_valid")))  # fmt: skip
    results = []
    for i, (task, r) in enumerate(records):
        logits = {"ve": out.ve_logits, "rec": out.rec_logits, "vqa": out.vqa_logits, "itm": out.itm_logits}[
            task
        ][i]
        results.append(
            {
                "task": task,
                "text": getattr(r, FIELDS[task]),
                "image": r.image.name,
                "valid_regions": int(regions.valid[rows[i]].sum()),
                "decision": int(logits.argmax()) if task != "itm" else int(logits > 0),
                "logits": [round(float(v), 5) for v in np.atleast_1d(logits.numpy())],
            }
        )
    return results


def test_committed_model_reproduces_stored_predictions() -> None:
    stored = json.loads(STORED.read_text())
    got = predictions()
    assert [(g["task"], g["text"], g["image"]) for g in got] == [
        (s["task"], s["text"], s["image"]) for s in stored
    ]
    for g, s in zip(got, stored, strict=True):
        assert g["valid_regions"] == s["valid_regions"], g["text"]
        assert g["decision"] == s["decision"], g["text"]
        assert np.allclose(comparable(g), comparable(s), atol=1e-3), g["text"]


def comparable(prediction: dict) -> np.ndarray:
    """The logits as they matter: grounding is a softmax over the valid region slots (invalid ones
    hold -1e4), so its logits count only up to a common shift: centred on the valid slots here."""
    logits = np.asarray(prediction["logits"], dtype=np.float64)
    if prediction["task"] != "rec":
        return logits
    valid = logits > -1e3
    assert valid.sum() == prediction["valid_regions"]
    return np.where(valid, logits - logits[valid].mean(), logits)


if __name__ == "__main__" and "--regenerate" in sys.argv:
    STORED.write_text(json.dumps(predictions(), indent=1) + "\n")
    print(f"wrote {STORED}")
