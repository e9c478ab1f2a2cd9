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
    from cmal.model_dir import Vocabularies
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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_world) -> Path:  # type: ignore[no-untyped-def]
    """A complete model directory: the demo detector plus a tiny, randomly initialised CMAL."""
    import shutil

    import torch

    from cmal.model.cmal import CMAL
    from cmal.model.config import demo_config
    from cmal.model.io import save_cmal

    _, table, tokenizer, vocab = tiny_world
    out = tmp_path_factory.mktemp("tiny_model") / "tiny-model"
    out.mkdir()
    for name in ("detector.safetensors", "detector.json", "labels.json"):
        shutil.copyfile(DEMO_DIR / name, out / name)
    config = demo_config(
        umse_hidden=32, umse_heads=2, hidden=32, heads=2, layers=1, intermediate=64,
        vocab_size=tokenizer.get_vocab_size(), num_concepts=len(vocab.tags), num_answers=len(vocab.answers),
        region_feature_dim=table.features.shape[-1], max_regions=table.features.shape[1],
    )  # fmt: skip
    torch.manual_seed(0)
    save_cmal(CMAL(config).eval(), out, tokenizer, vocab)
    return out


@pytest.fixture(scope="session")
def tiny_exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model directory with its graphs exported (ONNX fp32 and TorchScript)."""
    import shutil

    from export.api import export_model

    model = tmp_path_factory.mktemp("tiny_exported") / "tiny-model"
    shutil.copytree(tiny_model_dir, model)
    export_model(model, "all", log=lambda *_: None)
    return model


@pytest.fixture(scope="session")
def demo_exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo model with its ONNX graphs exported (the repo's own copy is left alone)."""
    import shutil

    from export.api import export_model

    model = tmp_path_factory.mktemp("demo_exported") / "shapes-demo"
    shutil.copytree(DEMO_DIR, model, ignore=shutil.ignore_patterns("export"))
    export_model(model, "onnx", log=lambda *_: None)
    return model


@pytest.fixture(scope="session")
def shifted_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 images of the shifted domain (other shapes, colours, background, size and wording)."""
    out = tmp_path_factory.mktemp("shifted_train")
    generate_split(out, seed=11, num_images=200, split="train", progress=False, domain="shifted")
    return out
