"""Host-side batch encoding for the fusion graph: tokens, masks and anchor index arrays (numpy only).

Shared by training, evaluation and the service so that all three feed the model identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from cmal.model_dir import Vocabularies
from cmal.text.anchors import Anchor, anchors_to_arrays, find_anchors, one_to_one, unambiguous, word_starts
from cmal.text.sizes import size_class
from cmal.text.tokenizer import PAD_ID


@dataclass(frozen=True)
class EncodedText:
    """One tokenised text: its WordPiece ids and where each word starts."""

    ids: list[int]  # WordPiece ids with [CLS] … [SEP]
    words: list[tuple[int, str]]  # (first token position, word)


def tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> list[EncodedText]:
    """Tokenise a batch of texts (truncated to the tokenizer's max length)."""
    encodings = tokenizer.encode_batch(list(texts))
    return [EncodedText(list(e.ids), word_starts(e, t)) for e, t in zip(encodings, texts, strict=True)]


def region_tag_names(tags: np.ndarray, valid: np.ndarray, names: Sequence[str]) -> list[str | None]:
    """Tag names of one image's region slots; None for invalid slots."""
    return [names[int(t)] if v else None for t, v in zip(tags, valid, strict=True)]


def region_size_names(
    boxes: np.ndarray, valid: np.ndarray, image_size: Sequence[int], vocab: Vocabularies
) -> list[str | None] | None:
    """Size classes of one image's region slots from their normalised boxes (K, 4) and the image's
    (width, height); None for invalid slots, and None when ``vocab`` has no size classes."""
    if not vocab.size_classes:
        return None
    width, height = float(image_size[0]), float(image_size[1])
    longer = max(width, height)
    sides = np.maximum((boxes[:, 2] - boxes[:, 0]) * width, (boxes[:, 3] - boxes[:, 1]) * height) / longer
    classes = vocab.size_classes
    return [size_class(float(s), classes) if v else None for s, v in zip(sides, valid, strict=True)]


def pad_ids(batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(B, L) int64 ids padded with [PAD] and the (B, L) int64 attention mask."""
    length = max(len(x) for x in batch)
    ids = np.full((len(batch), length), PAD_ID, np.int64)
    mask = np.zeros((len(batch), length), np.int64)
    for i, x in enumerate(batch):
        ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return ids, mask


def inference_anchors(
    texts: Sequence[EncodedText],
    region_tags: Sequence[Sequence[str | None]],
    vocab: Vocabularies,
    region_attributes: Sequence[Sequence[str | None]] | None = None,
    region_sizes: Sequence[Sequence[str | None] | None] | None = None,
) -> list[list[Anchor]]:
    """All anchors of each example (only words matching one region when ``vocab.skip_ambiguous``),
    reduced one-to-one (each slot swapped at most once). Attributes take part when the regions'
    attributes are given and ``vocab`` has attribute words; sizes when the regions' size classes
    are given and ``vocab`` has strict attribute anchors and size words."""
    attributes = region_attributes if region_attributes is not None else [None] * len(texts)
    sizes = region_sizes if region_sizes is not None else [None] * len(texts)
    keep = unambiguous if vocab.skip_ambiguous else list
    return [
        one_to_one(
            keep(
                find_anchors(
                    t.words,
                    tags,
                    vocab.tags,
                    vocab.synonyms,
                    attrs,
                    vocab.attribute_words,
                    vocab.strict_attributes,
                    size,
                    vocab.size_words,
                    vocab.generic_nouns,
                    vocab.group_anchors,
                )
            )
        )
        for t, tags, attrs, size in zip(texts, region_tags, attributes, sizes, strict=True)
    ]


def fusion_inputs(
    texts: Sequence[EncodedText],
    region_tags: Sequence[Sequence[str | None]],
    vocab: Vocabularies,
    region_attributes: Sequence[Sequence[str | None]] | None = None,
    region_sizes: Sequence[Sequence[str | None] | None] | None = None,
) -> dict[str, np.ndarray]:
    """The text-side inputs of the fusion graph for a batch (regions are added by the caller).

    Returns:
        ``input_ids``, ``attention_mask`` (B, L) int64; ``anchor_token``, ``anchor_region`` (B, S)
        int64; ``anchor_valid`` (B, S) bool.
    """
    ids, mask = pad_ids([t.ids for t in texts])
    arrays = anchors_to_arrays(inference_anchors(texts, region_tags, vocab, region_attributes, region_sizes))
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "anchor_token": arrays["anchor_token"],
        "anchor_region": arrays["anchor_region"],
        "anchor_valid": arrays["anchor_valid"],
    }
