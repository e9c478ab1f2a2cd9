"""A fine-tuning corpus's own words (`add_words`, `load_grown_vocabulary`): new tokens appended, old
ids and rows kept, each new word starting from its pieces' mean embedding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cmal.model.cmal import CMAL
from cmal.model.config import demo_config
from cmal.model.io import VOCABULARY_ROWS, load_grown_vocabulary, read_weights, save_cmal
from cmal.model_dir import Vocabularies
from cmal.text.tokenizer import add_words, train_tokenizer

OLD = ["is the red box left of the circle?", "a red box and a blue circle."]
NEW = ["is the pink star left of the hoop?", "how many stars?", "a pink star.", "the pink hoop."]


def test_frequent_split_words_become_tokens_after_the_old_ids() -> None:
    old = train_tokenizer(OLD)
    grown, pieces = add_words(old, NEW, min_count=2)
    assert list(pieces) == ["pink", "hoop", "star"]  # 3, 2, 2 times (ties alphabetical); "stars" once
    assert grown.get_vocab_size() == old.get_vocab_size() + 3
    assert grown.token_to_id("pink") == old.get_vocab_size()  # most frequent first
    assert grown.encode("the pink star").tokens == ["[CLS]", "the", "pink", "star", "[SEP]"]
    assert len(grown.encode("stars").tokens) > 3  # still spelled in pieces
    assert grown.encode(OLD[0]).ids == old.encode(OLD[0]).ids  # what the model knew reads the same
    assert pieces["pink"] == old.encode("pink", add_special_tokens=False).ids


def test_nothing_new_keeps_the_tokenizer() -> None:
    old = train_tokenizer(OLD)
    assert add_words(old, OLD, min_count=1) == (old, {})
    assert add_words(old, NEW, min_count=0 + 100) == (old, {})


def test_grown_rows_keep_the_old_and_start_new_words_from_their_pieces(tmp_path: Path) -> None:
    old_tok = train_tokenizer(OLD)
    vocab = Vocabularies(["square", "circle"], ["red", "blue"], ["yes", "no"], {}, {})
    base = demo_config()
    config = base.__class__(**{**base.__dict__, "vocab_size": old_tok.get_vocab_size()})
    torch.manual_seed(0)
    save_cmal(CMAL(config), tmp_path, old_tok, vocab)
    grown_tok, pieces = add_words(old_tok, NEW, min_count=2)
    model = CMAL(base.__class__(**{**config.__dict__, "vocab_size": grown_tok.get_vocab_size()}))
    assert load_grown_vocabulary(model, tmp_path, list(pieces.values())) == list(VOCABULARY_ROWS)
    old, new = read_weights(tmp_path), model.state_dict()
    n = old_tok.get_vocab_size()
    for key in VOCABULARY_ROWS:
        assert torch.equal(new[key][:n], old[key])
    embedding = new[VOCABULARY_ROWS[0]]
    for i, ids in enumerate(pieces.values()):
        assert torch.allclose(embedding[n + i], old[VOCABULARY_ROWS[0]][ids].mean(0))
    with pytest.raises(ValueError, match="cannot grow"):
        load_grown_vocabulary(model, tmp_path, [[5]])
