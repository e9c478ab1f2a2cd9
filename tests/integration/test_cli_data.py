"""The installed ``cmal`` console script: ``cmal data shapes`` and ``cmal data check``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

CMAL = [str(Path(sys.executable).with_name("cmal"))]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMAL, *args], capture_output=True, text=True, timeout=120)


def test_shapes_then_check(tmp_path: Path) -> None:
    out = tmp_path / "val"
    result = run("data", "shapes", "--out", str(out), "--seed", "9", "--num-images", "30", "--split", "val")
    assert result.returncode == 0, result.stderr
    assert "images          30" in result.stdout
    assert "ve labels       contradiction 30, entailment 30, neutral 30" in result.stdout
    assert "shapes val" in result.stderr  # the progress bar
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["seed"] == 9 and meta["split"] == "val" and meta["num_images"] == 30

    result = run("data", "check", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    # per image 3 + 4 + 3 + 2 + 4 labels, and an expression naming nothing on about half of them
    assert "checked 497 labels over 30 images: 0 wrong" in result.stdout


def test_check_reports_wrong_labels_and_malformed_lines(tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert run("data", "shapes", "--out", str(out), "--num-images", "5", "--quiet").returncode == 0
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    lines = (bad / "itm.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["match"] = not first["match"]
    (bad / "itm.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    result = run("data", "check", str(bad))
    assert result.returncode == 1
    assert "itm.jsonl:1: label" in result.stdout and "1 wrong" in result.stdout

    (bad / "vqa.jsonl").write_text('{"image": "images/000000.png", "answers": ["red"]}\n')
    result = run("data", "check", str(bad))
    assert result.returncode == 1
    assert "vqa.jsonl:1: missing field 'question'" in result.stderr


def test_bad_arguments_exit_nonzero_with_message(tmp_path: Path) -> None:
    result = run("data", "shapes", "--out", str(tmp_path), "--num-images", "0")
    assert result.returncode == 2 and "num_images must be at least 1" in result.stderr
    result = run("data", "shapes", "--out", str(tmp_path), "--split", "dev")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    result = run("data", "shapes", "--out", str(tmp_path), "--extra-statements", "listing:2")
    assert (
        result.returncode == 2 and "expected KIND=N (N a whole number ≥ 0), got 'listing:2'" in result.stderr
    )
    result = run("data", "shapes", "--out", str(tmp_path), "--extra-statements", "caption=1")
    assert result.returncode == 2 and "unknown statement kind 'caption'" in result.stderr


def test_shifted_domain_then_check(tmp_path: Path) -> None:
    out = tmp_path / "shifted"
    result = run("data", "shapes", "--out", str(out), "--num-images", "12", "--domain", "shifted", "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "dataset.json").read_text())["image_size"] == 160  # the domain's default
    result = run("data", "check", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 197 labels over 12 images: 0 wrong" in result.stdout
    result = run("data", "shapes", "--out", str(tmp_path / "x"), "--domain", "mars")
    assert result.returncode == 2 and "invalid choice" in result.stderr
