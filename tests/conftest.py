"""Shared fixtures: small generated Shapes splits (session-scoped, generated once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmal.data.generate import generate_split


@pytest.fixture(scope="session")
def shapes_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes_train")
    generate_split(out, seed=11, num_images=400, split="train", progress=False)
    return out


@pytest.fixture(scope="session")
def shapes_compositional(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes_comp")
    generate_split(out, seed=11, num_images=200, split="compositional", progress=False)
    return out
