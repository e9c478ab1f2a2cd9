"""Anchor detection ⊕ with exact expectations: synonyms, plurals, word pieces, many-to-many."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cmal.data.vocab import SHAPES, synonym_table
from cmal.model_dir import Vocabularies
from cmal.text.anchors import (
    Anchor,
    anchors_to_arrays,
    find_anchors,
    is_indefinite,
    is_plural,
    normalise,
    one_to_one,
    unambiguous,
    word_starts,
)
from cmal.text.encode import EncodedText, inference_anchors, region_size_names
from cmal.text.tokenizer import CLS_ID, PAD_ID, SEP_ID, load_tokenizer, train_tokenizer

SYN = synonym_table()


def words(text: str) -> list[tuple[int, str]]:
    """Word positions as a tokenizer that keeps every word whole would give them ([CLS] at 0)."""
    return [(i + 1, w) for i, w in enumerate(text.split())]


@pytest.mark.parametrize(
    ("word", "concept"),
    [("circle", "circle"), ("Circles", "circle"), ("box", "square"), ("boxes", "square"),
     ("rhombuses", "diamond"), ("disc", "circle"), ("crosses", "cross"), ("red", None), ("boxy", None)],
)  # fmt: skip
def test_normalise(word: str, concept: str | None) -> None:
    assert normalise(word, SYN) == concept


def test_synonyms_plurals_and_many_to_many() -> None:
    tags = ["circle", "square", "circle", None, "diamond"]
    got = find_anchors(words("two discs left of the big box and a rhombus"), tags, SHAPES, SYN)
    assert got == [
        Anchor(region=0, token=2, concept=0),  # discs -> both circles
        Anchor(region=2, token=2, concept=0),
        Anchor(region=1, token=7, concept=1),  # box -> square
        Anchor(region=4, token=10, concept=3),  # rhombus -> diamond
    ]


def test_two_words_one_region_and_invalid_slots() -> None:
    tags = [None, "cross", None]
    got = find_anchors(words("a cross above another cross"), tags, SHAPES, SYN)
    assert got == [Anchor(1, 2, 4), Anchor(1, 5, 4)]
    assert find_anchors(words("a cross"), [None, None], SHAPES, SYN) == []  # invalid regions never anchor


def test_no_anchors() -> None:
    assert (
        find_anchors(words("what colour is the thing on the left"), ["circle", "square"], SHAPES, SYN) == []
    )
    assert find_anchors(words("a red circle"), ["square"], SHAPES, SYN) == []


def test_word_pieces_anchor_at_the_first_piece() -> None:
    # a tokenizer whose tiny vocabulary must split "rhombuses" and "triangle" into pieces
    letters = " ".join("abcdefghijklmnopqrstuvwxyz")
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    tok = train_tokenizer([letters, f"{alphabet} {alphabet[::-1]}", "the and the and"], vocab_size=70)
    text = "the rhombuses and a triangle"
    enc = tok.encode(text)
    assert enc.ids[0] == CLS_ID and enc.ids[-1] == SEP_ID
    starts = word_starts(enc, text)
    assert [w for _, w in starts] == ["the", "rhombuses", "and", "a", "triangle"]
    pieces = {w: enc.word_ids.count(i) for i, (_, w) in enumerate(starts)}
    assert pieces["rhombuses"] > 1 and pieces["triangle"] > 1  # really split
    got = find_anchors(starts, ["triangle", "diamond"], SHAPES, SYN)
    first = {w: p for p, w in starts}
    assert got == [Anchor(1, first["rhombuses"], 3), Anchor(0, first["triangle"], 2)]
    assert enc.tokens[first["rhombuses"]] != "##" and not enc.tokens[first["rhombuses"]].startswith("##")


def test_tokenizer_round_trip_and_ids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tok = train_tokenizer(["there is a red circle.", "how many boxes are there?"] * 5, vocab_size=120)
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(tmp_path)
    enc = loaded.encode("there is a red circle.")
    assert enc.ids == tok.encode("there is a red circle.").ids
    assert loaded.token_to_id("[PAD]") == PAD_ID
    assert enc.tokens == ["[CLS]", "there", "is", "a", "red", "circle", ".", "[SEP]"]
    assert loaded.decode(enc.ids) == "there is a red circle."


def test_arrays_and_one_to_one() -> None:
    batch = [[Anchor(0, 2, 0), Anchor(2, 2, 0), Anchor(1, 7, 1)], []]
    arrays = anchors_to_arrays(batch)
    assert arrays["anchor_token"].tolist() == [[2, 2, 7], [0, 0, 0]]
    assert arrays["anchor_region"].tolist() == [[0, 2, 1], [0, 0, 0]]
    assert arrays["anchor_valid"].tolist() == [[True, True, True], [False, False, False]]
    assert arrays["anchor_concept"].dtype == np.int64
    assert one_to_one(batch[0]) == [Anchor(0, 2, 0), Anchor(1, 7, 1)]  # token 2 used once


COLOUR_WORDS = {"red": "red", "green": "green", "purple": "purple", "violet": "purple"}


def test_a_named_colour_picks_the_matching_regions() -> None:
    tags = ["circle", "square", "circle", "circle"]
    colours = ["red", "green", "purple", "red"]
    text = words("the big violet disc is left of a red circle and a circle")
    got = find_anchors(text, tags, SHAPES, SYN, colours, COLOUR_WORDS)
    assert got == [
        Anchor(region=2, token=4, concept=0),  # "big violet disc" -> the purple circle only
        Anchor(region=0, token=10, concept=0),  # "red circle" -> both red circles
        Anchor(region=3, token=10, concept=0),
        Anchor(region=0, token=13, concept=0),  # no colour named -> every circle
        Anchor(region=2, token=13, concept=0),
        Anchor(region=3, token=13, concept=0),
    ]
    # greedy one-to-one now swaps the violet disc with the purple circle, not the first circle
    assert one_to_one(got)[0] == Anchor(region=2, token=4, concept=0)
    # without the attribute table (models trained before it) anchors are by tag alone
    assert find_anchors(text, tags, SHAPES, SYN) == find_anchors(text, tags, SHAPES, SYN, colours, {})
    assert [a.region for a in find_anchors(text, tags, SHAPES, SYN)[:3]] == [0, 2, 3]


def test_a_colour_no_region_has_or_one_beyond_the_phrase_is_ignored() -> None:
    tags = ["circle", "circle", "square"]
    colours = ["red", "green", "purple"]
    # "green" names no square, so the square anchors as before; a colour is not read across the
    # noun "box" or outside the three words before the noun
    text = words("a purple box beside a green box and a red box , circle")
    got = find_anchors(text, tags, SHAPES, SYN, colours, COLOUR_WORDS)
    assert {a.region for a in got if a.concept == 1} == {2}
    assert [a.region for a in got if a.concept == 0] == [0, 1]  # "red box , circle": not red
    far = words("the red one is bigger than this circle")
    assert [a.region for a in find_anchors(far, tags, SHAPES, SYN, colours, COLOUR_WORDS)] == [0, 1]


def test_strict_attributes_leave_a_noun_whose_colour_no_region_wears_unanchored() -> None:
    tags = ["circle", "circle", "square"]
    colours = ["red", "green", "purple"]
    text = words("a scene with three shapes : a green circle , a red box and a red circle")
    lenient = find_anchors(text, tags, SHAPES, SYN, colours, COLOUR_WORDS)
    strict = find_anchors(text, tags, SHAPES, SYN, colours, COLOUR_WORDS, strict=True)
    # "a red box": the one square is purple; leniently it anchors anyway, strictly it does not
    assert [a.region for a in lenient if a.token == 13] == [2]
    assert [a for a in strict if a.token == 13] == []
    # a colour some circle wears picks that circle in both
    assert [a.region for a in strict if a.token == 9] == [1] == [a.region for a in lenient if a.token == 9]
    assert [a.region for a in strict if a.token == 17] == [0]
    # no colour in the phrase: every region of the concept, strict or not
    plain = words("the circle is left of the box")
    assert find_anchors(plain, tags, SHAPES, SYN, colours, COLOUR_WORDS, strict=True) == find_anchors(
        plain, tags, SHAPES, SYN, colours, COLOUR_WORDS
    )
    # a vocabulary that asks for it gets strict anchors at inference
    vocab = Vocabularies(list(SHAPES), sorted(set(colours)), [], dict(SYN), dict(COLOUR_WORDS))
    texts = [EncodedText([0] * 18, text)]
    assert inference_anchors(texts, [tags], replace(vocab, strict_attributes=True), [colours]) == [
        one_to_one(strict)
    ]


SIZE_WORDS = {"small": "small", "tiny": "small", "big": "large", "large": "large"}


def test_strict_anchors_also_read_a_named_size_from_the_regions_boxes() -> None:
    tags = ["circle", "square"]
    colours = ["red", "purple"]
    sizes = ["large", "small"]
    text = words("a scene with two shapes : a small red circle and a tiny purple box")
    strict = find_anchors(text, tags, SHAPES, SYN, colours, COLOUR_WORDS, True, sizes, SIZE_WORDS)
    assert [a.region for a in strict] == [1]  # the red circle is large: no anchor; the box is small
    lenient = find_anchors(text, tags, SHAPES, SYN, colours, COLOUR_WORDS, False, sizes, SIZE_WORDS)
    assert [a.region for a in lenient] == [0, 1]  # sizes count only in strict mode
    # region sizes come from the detected boxes (normalised) and the model's fitted size classes
    vocab = Vocabularies(
        list(SHAPES), ["purple", "red"], [], dict(SYN), dict(COLOUR_WORDS), strict_attributes=True,
        size_words=SIZE_WORDS, size_classes=[("small", 0.16), ("large", None)],
    )  # fmt: skip
    boxes = np.array([[0.1, 0.1, 0.32, 0.3], [0.5, 0.5, 0.6, 0.62], [0, 0, 0, 0]], np.float32)
    valid = np.array([True, True, False])
    assert region_size_names(boxes, valid, (128, 128), vocab) == ["large", "small", None]
    assert region_size_names(boxes, valid, (128, 128), replace(vocab, size_classes=[])) is None
    texts = [EncodedText([0] * 16, text)]
    got = inference_anchors(texts, [tags], vocab, [colours], [sizes])
    assert got == [one_to_one(strict)]


def test_ambiguous_words_can_be_left_unswapped() -> None:
    tags = ["circle", "square", "circle", "circle"]
    colours = ["red", "green", "purple", "red"]
    text = words("the leftmost circle is right of the violet disc and the box")
    got = find_anchors(text, tags, SHAPES, SYN, colours, COLOUR_WORDS)
    # "circle" matches three regions: which one is meant only the whole expression says
    assert unambiguous(got) == [Anchor(region=2, token=9, concept=0), Anchor(region=1, token=12, concept=1)]
    assert one_to_one(got)[0] == Anchor(region=0, token=3, concept=0)  # the old rule: the first circle
    texts = [EncodedText([0] * 14, text)]
    vocab = Vocabularies(list(SHAPES), sorted(set(colours)), [], dict(SYN), dict(COLOUR_WORDS))
    plain = inference_anchors(texts, [tags], vocab, [colours])
    skipped = inference_anchors(texts, [tags], replace(vocab, skip_ambiguous=True), [colours])
    assert [a.token for a in plain[0]] == [3, 9, 12]
    assert [a.token for a in skipped[0]] == [9, 12]


GENERIC = ("object", "shape", "thing")


def test_generic_nouns_anchor_by_the_colour_and_size_their_phrase_names() -> None:
    tags = ["circle", "square", "circle", None]
    colours = ["red", "purple", "red", None]
    sizes = ["large", "small", "small", None]
    text = words("is the violet shape left of the small red thing and the big object ? which thing")
    args = (tags, SHAPES, SYN, colours, COLOUR_WORDS, True, sizes, SIZE_WORDS)
    got = find_anchors(text, *args, generic_nouns=GENERIC)
    assert got == [
        Anchor(region=1, token=4, concept=1),  # "violet shape": the purple square, its concept
        Anchor(region=2, token=10, concept=0),  # "small red thing": the small red circle
        Anchor(region=0, token=14, concept=0),  # "big object": the large one
    ]  # "which thing" names nothing: no anchor
    assert find_anchors(text, *args) == []  # without generic nouns (models before them) none
    # plurals; a colour no region wears anchors nowhere; sizes count only in strict mode
    plural = words("how many red things and green objects")
    assert [a.region for a in find_anchors(plural, *args, generic_nouns=GENERIC)] == [0, 2]
    lenient = find_anchors(text, *args[:5], False, sizes, SIZE_WORDS, generic_nouns=GENERIC)
    assert [a.region for a in lenient] == [1, 0, 2]  # "big object" names a size only: none
    # a vocabulary with generic nouns gets them at inference, ambiguous ones left unswapped
    vocab = Vocabularies(
        list(SHAPES), ["purple", "red"], [], dict(SYN), dict(COLOUR_WORDS), skip_ambiguous=True,
        strict_attributes=True, size_words=SIZE_WORDS, size_classes=[("small", 0.16), ("large", None)],
        generic_nouns=list(GENERIC),
    )  # fmt: skip
    texts = [EncodedText([0] * 19, text), EncodedText([0] * 9, plural)]
    got_both = inference_anchors(texts, [tags, tags], vocab, [colours, colours], [sizes, sizes])
    assert got_both == [got, []]


def test_plural_and_indefinite_nouns_can_keep_every_region_they_match() -> None:
    tags = ["circle", "square", "circle", "circle"]
    colours = ["red", "green", "red", "purple"]
    text = words("how many red circles are left of the box and the circle")
    args = (tags, SHAPES, SYN, colours, COLOUR_WORDS, True)
    plain, grouped = find_anchors(text, *args), find_anchors(text, *args, groups=True)
    assert grouped == plain  # the same anchors: "circles" the two red circles, "circle" all three
    assert [a.group for a in grouped] == [True, True, False, False, False, False]  # "circles" only
    assert unambiguous(plain) == [Anchor(1, 9, 1)]  # both match several regions: left unswapped
    assert unambiguous(grouped) == [Anchor(0, 4, 0), Anchor(2, 4, 0), Anchor(1, 9, 1)]  # all of them
    assert one_to_one(unambiguous(grouped)) == unambiguous(grouped)
    # a region is still used once: a group keeps only those no earlier anchor took
    taken = [Anchor(0, 2, 0), Anchor(0, 4, 0, True), Anchor(2, 4, 0, True)]
    assert one_to_one(taken) == [Anchor(0, 2, 0), Anchor(2, 4, 0)]
    assert is_plural("boxes", SYN) and is_plural("Discs", SYN) and is_plural("things", SYN, GENERIC)
    assert not is_plural("cross", SYN) and not is_plural("box", SYN) and not is_plural("things", SYN)
    # a vocabulary that asks for them gets them at inference
    vocab = Vocabularies(
        list(SHAPES), ["green", "purple", "red"], [], dict(SYN), dict(COLOUR_WORDS), skip_ambiguous=True,
        strict_attributes=True, group_anchors=True,
    )  # fmt: skip
    texts = [EncodedText([0] * 14, text)]
    assert inference_anchors(texts, [tags], vocab, [colours]) == [unambiguous(grouped)]
    assert inference_anchors(texts, [tags], replace(vocab, group_anchors=False), [colours]) == [
        [Anchor(1, 9, 1)]
    ]
    # an indefinite noun means any of them: "a red circle" keeps both red circles; "an old box":
    # "old" is no colour or size word, so the determiner is not found and the box is no group
    some = find_anchors(words("is there a red circle or an old box"), *args, groups=True)
    assert [(a.region, a.token, a.group) for a in some] == [(0, 5, True), (2, 5, True), (1, 9, False)]
    assert is_indefinite(words("any big red circles"), 3, {"big", "red"})
    assert not is_indefinite(words("the red circle"), 2, {"red"})
    assert is_indefinite(words("a b c d circle"), 4, {"b", "c", "d"})  # three modifiers, then "a"
    assert not is_indefinite(words("a b c d e circle"), 5, {"b", "c", "d", "e"})  # beyond the window
