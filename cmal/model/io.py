"""A CMAL model directory: config, weights (safetensors), tokenizer and label maps (DESIGN.md §4)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from cmal.model.cmal import CMAL
from cmal.model.config import CMALConfig
from cmal.model.heads import GroundingHead
from cmal.text.tokenizer import load_tokenizer

CONFIG = "cmal.json"
WEIGHTS = "cmal.safetensors"
TOKENIZER = "tokenizer.json"
LABELS = "labels.json"
SYNONYMS = "synonyms.json"


@dataclass
class Vocabularies:
    """Label maps of a model directory (index = id)."""

    tags: list[str]  # detector tags = AMC concepts
    attributes: list[str]
    answers: list[str]  # VQA answer vocabulary
    synonyms: dict[str, str]  # surface word -> concept
    # surface word -> attribute, for attribute-aware anchors (empty: models trained without them)
    attribute_words: dict[str, str] = field(default_factory=dict)
    # a word matching several regions is left unswapped (False: it swaps with the first; models
    # fine-tuned before this option)
    skip_ambiguous: bool = False


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load_vocabularies(folder: Path) -> Vocabularies:
    labels = read_json(folder / LABELS)
    synonyms = read_json(folder / SYNONYMS) if (folder / SYNONYMS).is_file() else {}
    return Vocabularies(
        labels["tags"],
        labels["attributes"],
        labels.get("answers", []),
        synonyms,
        labels.get("attribute_words", {}),
        bool(labels.get("skip_ambiguous_anchors", False)),
    )


def save_cmal(model: CMAL, folder: Path, tokenizer: Tokenizer, vocab: Vocabularies) -> None:
    """Write the CMAL weights, config, tokenizer and label maps into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt", "model": "cmal"})
    model.config.save(folder / CONFIG)
    tokenizer.save(str(folder / TOKENIZER))
    labels = read_json(folder / LABELS) if (folder / LABELS).is_file() else {}
    labels.update({"tags": vocab.tags, "attributes": vocab.attributes, "answers": vocab.answers})
    if vocab.attribute_words:
        labels["attribute_words"] = vocab.attribute_words
    labels["skip_ambiguous_anchors"] = vocab.skip_ambiguous
    write_json(folder / LABELS, labels)
    write_json(folder / SYNONYMS, vocab.synonyms)


def has_cmal(folder: Path) -> bool:
    return (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file()


def load_cmal(folder: Path) -> tuple[CMAL, Tokenizer, Vocabularies]:
    """Load a model directory's CMAL model (eval mode), tokenizer and vocabularies."""
    for name in (CONFIG, WEIGHTS, TOKENIZER, LABELS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a CMAL model directory: {name} is missing")
    config = CMALConfig.load(folder / CONFIG)
    vocab = load_vocabularies(folder)
    if len(vocab.answers) != config.num_answers or len(vocab.tags) != config.num_concepts:
        raise ValueError(f"{folder}: labels.json does not match {CONFIG} (answers or concepts)")
    model = CMAL(config)
    model.load_state_dict(read_weights(folder))
    model.eval()
    return model, load_tokenizer(folder / TOKENIZER), vocab


def drop_retired(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """``state`` without tensors that older versions of CMAL had and this one dropped (e.g. the
    grounding scorer's bias, which a softmax over regions cancels); ``prefix`` precedes each key."""
    retired = {prefix + key for key in GroundingHead.RETIRED_KEYS}
    return {k: v for k, v in state.items() if k not in retired}


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A model directory's CMAL weights, older checkpoints included (see `drop_retired`)."""
    return drop_retired(load_file(str(folder / WEIGHTS)))


def load_partial(model: CMAL, folder: Path, blend: float = 1.0) -> list[str]:
    """Initialise ``model`` from a checkpoint, skipping tensors whose shape differs (e.g. a new
    answer vocabulary or tokenizer); returns the names skipped.

    ``blend`` < 1 starts from ``blend · checkpoint + (1 − blend) · model's own (fresh) weights``:
    a warm start shrunk towards a fresh initialisation.
    """
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    state = read_weights(folder)
    own = model.state_dict()
    usable = {
        k: blend * v + (1.0 - blend) * own[k] if blend < 1.0 and v.is_floating_point() else v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape
    }
    skipped = sorted(set(own) - set(usable))
    own.update(usable)
    model.load_state_dict(own)
    return skipped


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
