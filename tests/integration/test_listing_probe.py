"""scripts/listing_probe.py: its listings are true or false exactly as labelled, by the independent
label checker, and the model is scored on each kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cmal.data.checker import Scene
from cmal.data.domain import get_domain
from tests.scripts import SCRIPTS, load_script


def test_probe_listings_are_labelled_as_the_checker_reads_them(tiny_world) -> None:  # type: ignore[no-untyped-def]
    probe = load_script("listing_probe")
    data = tiny_world[0]
    objects = [json.loads(line) for line in (data / "objects.jsonl").read_text().splitlines()]
    domain = get_domain("shapes")
    records = probe.probe_records(objects, list(domain.colours), list(domain.shapes))
    scenes = {o["image"]: Scene(o) for o in objects}
    assert records
    for r in records:
        assert scenes[r["image"]].truth(r["text"]) is r["match"], r
    many = [o for o in objects if len(o["objects"]) >= 3]
    assert many
    kinds = {r["kind"] for r in records}
    for o in many:  # every place of a long listing is probed, for both changes
        n = len(o["objects"])
        assert {f"n{n}-true", f"n{n}-colour-first", f"n{n}-colour-middle", f"n{n}-shape-last"} <= kinds


def test_probe_scores_every_record(tmp_path: Path, tiny_world, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "probe.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "listing_probe.py"), str(tiny_model_dir), str(tiny_world[0]),
         "--output", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    results = json.loads(out.read_text())
    assert results and all(0.0 <= r["accuracy"] <= 1.0 and r["n"] > 0 for r in results.values())
    assert all(k.split("-")[0][0] == "n" for k in results)
    assert "| items | true |" in done.stdout
