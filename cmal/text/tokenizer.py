"""A BERT-style WordPiece tokenizer built from the model's own corpus, saved as ``tokenizer.json``.

Nothing can be downloaded here, so each model builds its tokenizer from its training texts with
the `tokenizers` library: BERT normalisation (lower case), BERT pre-tokenisation, WordPiece with
``##`` continuations, ``[CLS] … [SEP]`` post-processing. Load it with `load_tokenizer` (never with
``BertTokenizerFast(vocab_file=…)``, which silently builds a wrong vocabulary in transformers 5).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 400, max_length: int = 40) -> Tokenizer:
    """Build a WordPiece tokenizer from ``texts``, deterministically.

    The vocabulary is: the special tokens, every character seen at a word start, ``##`` + every
    character seen anywhere (so any word of the corpus' alphabet can be split into pieces), then
    whole words by descending frequency (ties alphabetical) until ``vocab_size``. Rare words beyond
    that are split into the longest known pieces. (The `tokenizers` WordPiece trainer breaks ties
    differently from run to run, which would give every process of a torchrun job its own ids.)

    Args:
        texts: the training corpus.
        vocab_size: at most this many entries (the characters may push it higher).
        max_length: sequences are truncated to this many tokens ([CLS] and [SEP] included).
    """
    tok = Tokenizer(models.WordPiece(vocab={"[UNK]": 0}, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        normalised = tok.normalizer.normalize_str(text)
        counts.update(word for word, _ in tok.pre_tokenizer.pre_tokenize_str(normalised))
    initials = sorted({w[0] for w in counts})
    inner = sorted({c for w in counts for c in w[1:]} | set(initials))
    vocab: dict[str, int] = {}
    for entry in [*SPECIAL_TOKENS, *initials, *(f"##{c}" for c in inner)]:
        vocab.setdefault(entry, len(vocab))
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(word, len(vocab))
    tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # already in the vocabulary: ids unchanged
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)]
    )
    tok.enable_truncation(max_length=max_length)
    for i, name in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(name) != i:
            raise RuntimeError(f"special token {name} did not get id {i}")
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load ``tokenizer.json`` (a file, or a model directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}")
    tok = Tokenizer.from_file(str(path))
    if tok.token_to_id("[CLS]") != CLS_ID or tok.token_to_id("[PAD]") != PAD_ID:
        raise ValueError(f"{path}: not a CMAL tokenizer (special token ids differ)")
    return tok


def add_words(
    tokenizer: Tokenizer, texts: Iterable[str], min_count: int = 3
) -> tuple[Tokenizer, dict[str, list[int]]]:
    """``tokenizer`` with the frequent words of ``texts`` it does not know as tokens of their own.

    A fine-tuning corpus from another domain names things the model's tokenizer only spells out
    in pieces ("pentagon" → p ##e ##n ##t ##a ##g ##o ##n): the text grows long (and is truncated
    past ``max_length``), and the model must learn the word from its letters. Every word seen at
    least ``min_count`` times that the tokenizer splits becomes a token, appended after the existing
    ids (which keep their meaning), most frequent first (ties alphabetical), so a checkpoint's rows
    still fit.

    Returns:
        The grown tokenizer (``tokenizer`` itself when nothing is new) and, for each new word, the
        ids of the pieces the old tokenizer spelled it with (to start its embedding from).
    """
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    assert normalizer is not None and pre_tokenizer is not None
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = tokenizer.get_vocab()
    new = [
        word
        for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= min_count and word not in vocab and len(word) > 1
    ]
    if not new:
        return tokenizer, {}
    pieces = {w: tokenizer.encode(w, add_special_tokens=False).ids for w in new}
    spec = json.loads(tokenizer.to_str())
    for word in new:
        spec["model"]["vocab"][word] = len(spec["model"]["vocab"])
    return Tokenizer.from_str(json.dumps(spec)), pieces
