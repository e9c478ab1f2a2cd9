"""The models `cmal bench` measures: ``demo`` (the bundled demo model) and ``paper`` (the paper's
size with random weights), each exported once into the benchmark's folder and reused while its
weights are unchanged."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from cmal.inference import GraphMismatch, read_manifest
from cmal.model_dir import (
    CMAL_CONFIG,
    DETECTOR_CONFIG,
    DETECTOR_WEIGHTS,
    SYNONYMS,
    TOKENIZER,
    read_json,
)

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "shapes-demo"
PRESETS = ("demo", "paper")


def paper_model(out: Path, seed: int = 0) -> Path:
    """A model directory at the paper's size (12 layers, hidden 768, 12 heads) with random
    weights, beside the bundled model's detector, tokenizer and labels. Speed does not depend
    on the weights' values, so nothing is trained; the regions are the detector's
    (``max_detections``) and texts are as long as the demo's."""
    import torch

    from cmal.model.cmal import CMAL
    from cmal.model.config import CMALConfig, paper_config
    from cmal.model.io import save_cmal
    from cmal.model_dir import Vocabularies
    from cmal.text.tokenizer import load_tokenizer

    if (out / CMAL_CONFIG).is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in (DETECTOR_CONFIG, DETECTOR_WEIGHTS, SYNONYMS):
        if (BUNDLED / name).is_file():
            shutil.copy2(BUNDLED / name, out / name)
    demo = CMALConfig.load(BUNDLED / CMAL_CONFIG)
    config = paper_config(
        vocab_size=demo.vocab_size,
        max_tokens=demo.max_tokens,
        max_regions=int(read_json(BUNDLED / DETECTOR_CONFIG)["max_detections"]),
        region_feature_dim=demo.region_feature_dim,
        num_concepts=demo.num_concepts,
        num_answers=demo.num_answers,
    )
    torch.manual_seed(seed)
    model = CMAL(config).eval()
    save_cmal(model, out, load_tokenizer(BUNDLED / TOKENIZER), Vocabularies.load(BUNDLED))
    return out


def exported(
    model_dir: Path, graphs: Path, variants: set[str], trained: bool, log: Callable[[str], None]
) -> Path:
    """``graphs`` holding ``model_dir``'s ONNX and TorchScript graphs (and the ``variants``,
    int8 / fp16, asked for), exported now unless such an export of these weights is already there."""
    from cmal.model_dir import MANIFEST

    if usable(model_dir, graphs, variants):
        return graphs
    from export.api import export_model

    log(f"exporting {model_dir} to {graphs} (once; reused while the weights are unchanged)")
    (graphs / MANIFEST).unlink(missing_ok=True)
    int8, fp16 = "int8" in variants, "fp16" in variants
    if trained:
        export_model(model_dir, "all", graphs, int8=int8, fp16=fp16, log=log)
    else:  # decisions of random weights are near-ties: record variant figures without a verdict
        export_model(model_dir, "all", graphs, int8=int8, fp16=fp16, log=log, variant_policy=None)
    return graphs


def usable(model_dir: Path, graphs: Path, variants: set[str]) -> bool:
    """Whether ``graphs`` holds a passed export of ``model_dir``'s weights with the ``variants``."""
    try:
        manifest = read_manifest(model_dir, graphs)
    except (FileNotFoundError, GraphMismatch):
        return False
    have = {info.get("variant") for info in manifest["files"].values()}
    return bool(manifest.get("passed")) and variants <= have


def prepare(
    preset: str, out: Path, variants: set[str], log: Callable[[str], None], export: bool = True
) -> tuple[Path, Path | None]:
    """The model directory and exported graphs folder of ``preset`` with ONNX ``variants`` (int8,
    fp16), made under ``out`` if needed; no graphs (None) unless ``export``."""
    if preset == "demo":
        if not export:
            return BUNDLED, None
        return BUNDLED, exported(BUNDLED, out / "graphs-demo", variants, trained=True, log=log)
    if preset == "paper":
        model = paper_model(out / "paper-model")
        if not export:
            return model, None
        return model, exported(model, out / "graphs-paper", variants, trained=False, log=log)
    raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
