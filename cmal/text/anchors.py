"""Anchor detection ⊕: concepts present both as a detected object's tag and as a word.

``A = {(k, j, c) : norm(tag_k) = norm(word_j) = c}``. ``norm`` maps plurals and synonyms to a
canonical concept of the detector's tag vocabulary via the synonym table shipped with the model.
A word split into several word pieces anchors at its first piece; matches are many-to-many.
With an attribute table (surface word -> detector attribute, shipped in the model's labels.json),
a noun whose phrase names an attribute ("the violet box") anchors only to the regions whose
detected attribute matches, when any does; otherwise, or without the table, to every region of
its concept. Strict attribute anchors drop that fallback: such a noun anchors only to regions of
its concept with the named attribute, so "a green circle" in front of a red circle has no anchor,
as "a green square" with no square has none. A generic noun ("the black shape", "the small
things") anchors like a noun of every concept: to the regions wearing the colour and size its
phrase names, none when it names neither. A word matching several regions is left unswapped
(`unambiguous`), unless group anchors are asked for and it is a plural noun ("how many red
circles" means every red circle) or an indefinite one ("is there a red circle?" means any of
them): then it keeps them all (`Anchor.group`). Runs on the host (numpy, no torch); its output is
index arrays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Encoding


@dataclass(frozen=True)
class Anchor:
    """One anchor: region slot ``k`` and word (token position ``j``) that share concept ``c``."""

    region: int  # k: region slot
    token: int  # j: token position (first word piece of the word)
    concept: int  # c: concept id (index in the tag vocabulary)
    # a plural or indefinite noun's, with group anchors: its word keeps every region it matches
    # (not compared)
    group: bool = field(default=False, compare=False)


def singulars(word: str) -> list[str]:
    """What ``word`` (lower case) would be without a plural ending: without "es", then without "s"."""
    return [word[: -len(suffix)] for suffix in ("es", "s") if word.endswith(suffix)]


def normalise(word: str, synonyms: Mapping[str, str]) -> str | None:
    """The canonical concept of ``word``, or None: the synonym table, then plural stripping."""
    w = word.lower()
    if w in synonyms:
        return synonyms[w]
    return next((synonyms[s] for s in singulars(w) if s in synonyms), None)


def word_starts(encoding: Encoding, text: str) -> list[tuple[int, str]]:
    """(first token position, word text) for each word of an encoding (special tokens skipped)."""
    first: dict[int, int] = {}
    span: dict[int, tuple[int, int]] = {}
    for pos, (wid, (start, end)) in enumerate(zip(encoding.word_ids, encoding.offsets, strict=True)):
        if wid is None:
            continue
        if wid not in first:
            first[wid] = pos
            span[wid] = (start, end)
        else:
            span[wid] = (span[wid][0], end)
    return [(first[w], text[span[w][0] : span[w][1]]) for w in sorted(first)]


MODIFIER_WINDOW = 3  # words before a noun searched for its attribute ("a large violet box")


def is_generic(word: str, generic_nouns: Collection[str]) -> bool:
    """Whether ``word`` is one of ``generic_nouns`` or its plural ("thing", "things")."""
    w = word.lower()
    return w in generic_nouns or any(s in generic_nouns for s in singulars(w))


def is_plural(word: str, synonyms: Mapping[str, str], generic_nouns: Collection[str] = ()) -> bool:
    """Whether ``word`` is the plural of a concept's word or of a generic noun ("discs", "boxes",
    "things"): it ends in "s" or "es" after one of them."""
    return any(s in synonyms or s in generic_nouns for s in singulars(word.lower()))


INDEFINITE = frozenset({"a", "an", "any", "some"})
"""Determiners of a noun phrase that means any of the objects it matches."""


def is_indefinite(words: Sequence[tuple[int, str]], index: int, modifiers: Collection[str]) -> bool:
    """Whether the noun ``words[index]`` has an indefinite determiner (`INDEFINITE`): the first word
    before it that is not one of ``modifiers`` (colour and size words), within MODIFIER_WINDOW."""
    for _, word in reversed(words[max(0, index - MODIFIER_WINDOW - 1) : index]):
        w = word.lower()
        if w not in modifiers:
            return w in INDEFINITE
    return False


def phrase_attribute(
    words: Sequence[tuple[int, str]],
    index: int,
    synonyms: Mapping[str, str],
    attribute_words: Mapping[str, str],
) -> str | None:
    """The attribute named in the noun phrase ending at ``words[index]``: the nearest attribute word
    among the MODIFIER_WINDOW words before it, not looking past another noun or punctuation."""
    for _, word in reversed(words[max(0, index - MODIFIER_WINDOW) : index]):
        w = word.lower()
        if w in attribute_words:
            return attribute_words[w]
        if not w.isalpha() or normalise(w, synonyms) is not None:
            return None
    return None


def find_anchors(
    words: Sequence[tuple[int, str]],
    region_tags: Sequence[str | None],
    concepts: Sequence[str],
    synonyms: Mapping[str, str],
    region_attributes: Sequence[str | None] | None = None,
    attribute_words: Mapping[str, str] | None = None,
    strict: bool = False,
    region_sizes: Sequence[str | None] | None = None,
    size_words: Mapping[str, str] | None = None,
    generic_nouns: Collection[str] = (),
    groups: bool = False,
) -> list[Anchor]:
    """All anchor points of one example.

    Args:
        words: (token position, word) pairs, e.g. from `word_starts`.
        region_tags: the tag name of each region slot; None for an invalid slot.
        concepts: the concept (tag) vocabulary; concept ids index it.
        synonyms: surface word -> concept.
        region_attributes: the detected attribute name of each region slot (with ``attribute_words``).
        attribute_words: surface word -> attribute; empty or None: attributes are not used.
        strict: a noun whose phrase names an attribute anchors only to the regions of its concept
            with that attribute, none when no region has it; otherwise the attribute only chooses
            among several regions of the concept, all of them when none has it.
        region_sizes: each region slot's size class (with ``size_words``, surface word -> size
            class): when ``strict``, a noun whose phrase names a size anchors only to regions of
            that size too.
        generic_nouns: nouns of no concept ("object", "shape", "thing"; plurals too). One whose
            phrase names an attribute (with ``attribute_words``) or a size (with ``size_words``,
            when ``strict``) anchors to every region wearing what it names, with that region's
            concept; one naming neither has no anchor.
        groups: the anchors of a plural noun, and of a noun after an indefinite determiner
            (`is_indefinite`), are a group (`Anchor.group`): `unambiguous` and `one_to_one` keep
            all of them.

    Returns:
        Anchors sorted by (token, region).
    """
    concept_id = {c: i for i, c in enumerate(concepts)}
    tag_concepts = [normalise(t, synonyms) if t is not None else None for t in region_tags]
    modifiers = {*(attribute_words or {}), *(size_words or {})}
    anchors = []
    for index, (token, word) in enumerate(words):
        c = normalise(word, synonyms)
        group = groups and (
            is_plural(word, synonyms, generic_nouns) or is_indefinite(words, index, modifiers)
        )
        if c is None and generic_nouns and is_generic(word, generic_nouns):
            anchors += _generic_anchors(
                words, index, tag_concepts, concept_id, synonyms, region_attributes, attribute_words,
                region_sizes if strict else None, size_words, group,
            )  # fmt: skip
            continue
        if c is None or c not in concept_id:
            continue
        regions = [k for k, tc in enumerate(tag_concepts) if tc == c]
        if attribute_words and region_attributes is not None and (strict or len(regions) > 1):
            named = phrase_attribute(words, index, synonyms, attribute_words)
            wearing = [k for k in regions if named is not None and region_attributes[k] == named]
            regions = wearing if strict and named is not None else wearing or regions
        if strict and size_words and region_sizes is not None:
            size = phrase_attribute(words, index, synonyms, size_words)
            regions = [k for k in regions if size is None or region_sizes[k] == size]
        anchors += [Anchor(k, token, concept_id[c], group) for k in regions]
    return sorted(anchors, key=lambda a: (a.token, a.region))


def _generic_anchors(
    words: Sequence[tuple[int, str]],
    index: int,
    tag_concepts: Sequence[str | None],
    concept_id: Mapping[str, int],
    synonyms: Mapping[str, str],
    region_attributes: Sequence[str | None] | None,
    attribute_words: Mapping[str, str] | None,
    region_sizes: Sequence[str | None] | None,
    size_words: Mapping[str, str] | None,
    group: bool,
) -> list[Anchor]:
    """The anchors of the generic noun ``words[index]`` (see `find_anchors`)."""
    named = []  # (what each region names, the phrase's word for it)
    if attribute_words and region_attributes is not None:
        named.append((region_attributes, phrase_attribute(words, index, synonyms, attribute_words)))
    if size_words and region_sizes is not None:
        named.append((region_sizes, phrase_attribute(words, index, synonyms, size_words)))
    if all(wanted is None for _, wanted in named):
        return []  # "the thing": every region alike
    token = words[index][0]
    return [
        Anchor(k, token, concept_id[c], group)
        for k, c in enumerate(tag_concepts)
        if c is not None
        and c in concept_id
        and all(wanted is None or have[k] == wanted for have, wanted in named)
    ]


def anchors_to_arrays(batch: Sequence[Sequence[Anchor]], width: int | None = None) -> dict[str, np.ndarray]:
    """Pad a batch of anchor lists into index arrays.

    Returns:
        ``anchor_token``, ``anchor_region``, ``anchor_concept`` (B, S) int64 and ``anchor_valid``
        (B, S) bool, S = ``width`` or the longest list (at least 1).
    """
    s = width if width is not None else max([1, *(len(a) for a in batch)])
    out = {
        "anchor_token": np.zeros((len(batch), s), np.int64),
        "anchor_region": np.zeros((len(batch), s), np.int64),
        "anchor_concept": np.zeros((len(batch), s), np.int64),
        "anchor_valid": np.zeros((len(batch), s), bool),
    }
    for i, anchors in enumerate(batch):
        for n, a in enumerate(anchors[:s]):
            out["anchor_token"][i, n] = a.token
            out["anchor_region"][i, n] = a.region
            out["anchor_concept"][i, n] = a.concept
            out["anchor_valid"][i, n] = True
    return out


def unambiguous(anchors: Sequence[Anchor]) -> list[Anchor]:
    """The anchors of words that match exactly one region, and every anchor of a group.

    "the leftmost circle" with two circles in view anchors to both; swapping the word with either
    one would tell the model that this is the circle meant, which the word alone does not say.
    "how many circles" means them all (a group: `Anchor.group`).
    """
    regions_per_token = Counter(a.token for a in anchors)
    return [a for a in anchors if a.group or regions_per_token[a.token] == 1]


def one_to_one(anchors: Sequence[Anchor]) -> list[Anchor]:
    """A greedy matching: each token and each region used at most once (for swapping slots), but
    for a group's token (`Anchor.group`), which keeps each of its regions not used before."""
    used_t: set[int] = set()
    used_r: set[int] = set()
    out = []
    for a in anchors:
        if (a.group or a.token not in used_t) and a.region not in used_r:
            out.append(a)
            used_t.add(a.token)
            used_r.add(a.region)
    return out
