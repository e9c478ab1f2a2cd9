"""External tools the suite needs: found, or the test skips on a developer machine and fails
under ``CI=true`` (where ``.ci/run`` installs every one of them)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent  # tools installed with pip (hadolint) live beside Python


def missing(message: str) -> None:
    """Fail under CI (a missing tool there is a broken set-up), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require(name: str, install: str = "see .ci/run for how CI installs it") -> str:
    """The path of tool ``name`` (on PATH or in the venv)."""
    path = shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)
    if path is None:
        missing(f"{name} is not installed ({install})")
    return str(path)
