"""A new user's first commands: --version, a data folder that already holds a split, and a service
that cannot start — each answered with one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cmal.cli import main as cli_main

CMAL = str(Path(sys.executable).with_name("cmal"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_version() -> None:
    from importlib.metadata import version

    result = run(CMAL, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"cmal {version('cmal-serving')}"


def test_shapes_refuses_a_folder_with_a_split_unless_told_to_replace_it(tmp_path: Path) -> None:
    out = tmp_path / "split"
    assert cli_main(["data", "shapes", "--out", str(out), "--num-images", "4", "--quiet"]) == 0
    assert cli_main(["data", "shapes", "--out", str(out), "--num-images", "2", "--quiet"]) == 2
    assert len(list((out / "images").iterdir())) == 4  # untouched
    args = ["data", "shapes", "--out", str(out), "--num-images", "2", "--quiet", "--overwrite"]
    assert cli_main(args) == 0
    assert json.loads((out / "dataset.json").read_text())["num_images"] == 2
    assert len(list((out / "images").iterdir())) == 2  # the old images are gone

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert (
        cli_main(["data", "shapes", "--out", str(mine), "--num-images", "2", "--quiet", "--overwrite"]) == 2
    )
    assert (mine / "notes.txt").read_text() == "keep me"  # never clears a folder that is not a split


def test_a_service_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    for env, expected in (
        ({"CMAL_MODEL_DIR": str(tmp_path / "missing")}, "does not exist"),
        ({"CMAL_MODEL_DIR": str(tmp_path)}, "cmal.json is missing"),
        ({"CMAL_BACKEND": "tensorflow"}, "CMAL_BACKEND"),
        ({"CMAL_BACKEND": "torch", "CMAL_VARIANT": "int8"}, "not 'int8'"),  # int8 is ONNX's alone
    ):
        result = run(sys.executable, "-m", "service", "--port", "9", env=env)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    result = run(CMAL, "serve", "--model", str(tmp_path / "missing"), "--port", "9")
    assert (
        result.returncode == 2 and result.stderr.startswith("error: ") and "does not exist" in result.stderr
    )
