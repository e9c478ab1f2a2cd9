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


DEMO_DIR = Path(__file__).resolve().parents[1] / "models" / "shapes-demo"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """40 Shapes images with detector regions, a tokenizer and vocabularies, for model tests."""
    from cmal.data.vocab import COLOURS, SHAPES
    from cmal.model.io import Vocabularies
    from cmal.regions import detect_folder
    from cmal.text.tokenizer import train_tokenizer
    from cmal.train.examples import answer_vocabulary
    from cmal.train.run import _corpus, _synonyms

    out = tmp_path_factory.mktemp("tiny_world")
    generate_split(out, seed=77, num_images=40, split="train", progress=False)
    table = detect_folder(DEMO_DIR, out, progress=False)
    tokenizer = train_tokenizer(_corpus(out), vocab_size=300)
    vocab = Vocabularies(list(SHAPES), list(COLOURS), answer_vocabulary(out), _synonyms(SHAPES))
    return out, table, tokenizer, vocab


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO_DIR
