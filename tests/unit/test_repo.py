"""Repository habits: the licence pyproject declares, pre-commit hooks that match `make lint`."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_licence_file_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_pre_commit_runs_the_checks_of_make_lint() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlint:")[1].split("\n\n")[0]
    lint = {re.sub(r"^\$\(BIN\)/", "", line.strip()) for line in recipe.splitlines()[1:]}
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    entries = {h["entry"].removeprefix(".venv/bin/").replace(" --force-exclude", "") for h in hooks}
    assert entries == {c.removesuffix(" .") for c in lint}


def test_the_repository_is_self_contained() -> None:
    """Nothing points to the team's design notes outside the repository: what the code needs of
    them is in the repository's own docs."""
    import subprocess

    outside = "DESIGN" + ".md"  # spelled apart so that this test does not find itself
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    citing = [
        name
        for name in files.stdout.splitlines()
        if (ROOT / name).is_file()
        and name.endswith((".py", ".md", ".toml", ".yml", ".yaml", ".sh", ".txt"))
        and outside in (ROOT / name).read_text(encoding="utf-8", errors="replace")
    ]
    assert citing == []


def test_long_modules_say_why_they_are_long() -> None:
    import ast

    long = []
    for folder in ("cmal", "export", "service", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") > 400:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if "Over 400 lines on purpose" not in doc:
                    long.append(path.relative_to(ROOT).as_posix())
    assert long == [], "split these modules or say in their docstring why not"


def test_the_readme_documents_every_service_setting() -> None:
    from service.settings import Settings

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("| setting (env) | default | meaning |")[1].split("\n\n")[0]
    documented = set(re.findall(r"`CMAL_([A-Z_]+)`", section))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_the_readme_documents_every_setting_of_the_demo_model_script() -> None:
    """Every `NAME=${NAME:-default}` (or `${NAME-default}`) of scripts/demo_model.sh is named in the
    README's "Rebuilding the demo model"."""
    script = (ROOT / "scripts" / "demo_model.sh").read_text(encoding="utf-8")
    settings = set(re.findall(r"^([A-Z_]+)=\$\{\1:?-", script, flags=re.MULTILINE))
    assert {"DATA", "RUNS", "FRESH_STAGES", "FRESH_LR"} <= settings  # the pattern still finds them
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Rebuilding the demo model")[1].split("\n## ")[0].split("\n### ")[0]
    assert {name for name in settings if f"`{name}`" not in section} == set()


@pytest.mark.parametrize(
    ("name", "empty_means"),
    [
        ("FRESH_STAGES", "no fresh stages"),
        ("DET_ARGS", "the joint detector"),
        ("FT_DROPOUT", "the pre-trained model's dropout"),
    ],
)
def test_an_empty_demo_model_setting_is_kept_empty(name: str, empty_means: str) -> None:
    """The README says an empty FRESH_STAGES means none, an empty DET_ARGS the joint detector and an
    empty FT_DROPOUT the pre-trained model's dropout: the script's own assignment, run by bash with
    the setting empty, must keep it empty (``${X:-d}`` would put the default back), and with the
    setting unset must give the default."""
    script = (ROOT / "scripts" / "demo_model.sh").read_text(encoding="utf-8")
    line = next(ln for ln in script.splitlines() if ln.startswith(f"{name}=${{"))
    show = f'{line}\nprintf "[%s]" "${name}"'
    empty = subprocess.run(
        ["bash", "-c", show], env={"PATH": os.environ["PATH"], name: ""}, capture_output=True, text=True
    )
    unset = subprocess.run(
        ["bash", "-c", show], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert empty.stdout == "[]", f"{name}= should mean {empty_means}"
    assert unset.stdout not in ("", "[]")
