"""Saving and loading CMAL in a model directory (safetensors; never pickles).

The directory's layout and JSON files belong to `cmal.model_dir`; this module adds the torch side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from cmal.model.blocks import MLP
from cmal.model.cmal import CMAL
from cmal.model.config import CMALConfig
from cmal.model.heads import GroundingHead
from cmal.model_dir import CMAL_CONFIG, CMAL_WEIGHTS, LABELS, TOKENIZER, Vocabularies, require
from cmal.text.tokenizer import load_tokenizer


def save_cmal(model: CMAL, folder: Path, tokenizer: Tokenizer, vocab: Vocabularies) -> None:
    """Write the CMAL weights, config, tokenizer and label maps into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / CMAL_WEIGHTS), metadata={"format": "pt", "model": "cmal"})
    model.config.save(folder / CMAL_CONFIG)
    tokenizer.save(str(folder / TOKENIZER))
    vocab.save(folder)


def has_cmal(folder: Path) -> bool:
    """Whether ``folder`` holds CMAL weights and config (not only a detector)."""
    return (folder / CMAL_WEIGHTS).is_file() and (folder / CMAL_CONFIG).is_file()


def load_cmal(folder: Path) -> tuple[CMAL, Tokenizer, Vocabularies]:
    """Load a model directory's CMAL model (eval mode), tokenizer and vocabularies."""
    require(folder, (CMAL_CONFIG, CMAL_WEIGHTS, TOKENIZER, LABELS))
    config = CMALConfig.load(folder / CMAL_CONFIG)
    vocab = Vocabularies.load(folder)
    if len(vocab.answers) != config.num_answers or len(vocab.tags) != config.num_concepts:
        raise ValueError(f"{folder}: {LABELS} does not match {CMAL_CONFIG} (answers or concepts)")
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
    return drop_retired(load_file(str(folder / CMAL_WEIGHTS)))


VQA_OUTPUT = tuple(f"vqa_head.mlp.{MLP.OUTPUT}.{p}" for p in ("weight", "bias"))  # one row per VQA answer


def reorder_answers(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], old: Sequence[str], new: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``state`` with its VQA output rows moved from answer vocabulary ``old`` to ``new``.

    An answer in both keeps its trained row; an answer only in ``new`` gets ``own``'s (fresh) row.
    Without this, a fine-tuned model continued on data whose answer frequencies differ (the
    vocabulary is ordered by frequency) would start with its answers scrambled.
    """
    if not old or any(k not in state or state[k].shape[0] != len(old) for k in VQA_OUTPUT):
        return state
    where = {a: i for i, a in enumerate(old)}
    moved = dict(state)
    for key in VQA_OUTPUT:
        rows = [state[key][where[a]] if a in where else own[key][i] for i, a in enumerate(new)]
        moved[key] = torch.stack(rows)
    return moved


def load_partial(
    model: CMAL, folder: Path, blend: float = 1.0, answers: tuple[Sequence[str], Sequence[str]] | None = None
) -> list[str]:
    """Initialise ``model`` from a checkpoint, skipping tensors whose shape differs (e.g. a new
    tokenizer); returns the names skipped.

    ``answers`` = (the checkpoint's answer vocabulary, the model's): VQA output rows follow their
    answers (`reorder_answers`) instead of their positions. ``blend`` < 1 starts from
    ``blend · checkpoint + (1 − blend) · model's own (fresh) weights``: a warm start shrunk towards
    a fresh initialisation.
    """
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    own = model.state_dict()
    state = read_weights(folder)
    if answers is not None:
        state = reorder_answers(state, own, *answers)
    usable = {
        k: blend * v + (1.0 - blend) * own[k] if blend < 1.0 and v.is_floating_point() else v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape
    }
    skipped = sorted(set(own) - set(usable))
    own.update(usable)
    model.load_state_dict(own)
    return skipped


VOCABULARY_ROWS = (
    "text_encoder.tokens.weight",
    *(f"mlm_head.mlp.{MLP.OUTPUT}.{p}" for p in ("weight", "bias")),
)
"""The tensors with one row per token of the tokenizer."""


def load_grown_vocabulary(model: CMAL, folder: Path, pieces: Sequence[Sequence[int]]) -> list[str]:
    """After `load_partial` of a checkpoint whose tokenizer has since grown by ``len(pieces)`` words
    (`cmal.text.tokenizer.add_words`): every old token keeps its trained rows, and each new word's
    embedding starts at the mean of its pieces' (what the model read the word as until now); its MLM
    output row stays fresh. Returns the names of the tensors loaded."""
    state = read_weights(folder)
    own = model.state_dict()
    loaded = []
    for key in VOCABULARY_ROWS:
        old, grown = state[key], own[key].clone()
        if grown.shape[0] != old.shape[0] + len(pieces) or grown.shape[1:] != old.shape[1:]:
            raise ValueError(f"{key}: {tuple(old.shape)} cannot grow by {len(pieces)} rows to {grown.shape}")
        grown[: old.shape[0]] = old
        if key == VOCABULARY_ROWS[0]:
            for i, ids in enumerate(pieces):
                grown[old.shape[0] + i] = old[list(ids)].mean(0)
        own[key] = grown
        loaded.append(key)
    model.load_state_dict(own)
    return loaded


def count_parameters(model: torch.nn.Module) -> int:
    """How many numbers ``model`` learns."""
    return sum(p.numel() for p in model.parameters())
