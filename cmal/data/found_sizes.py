"""Size words read off the texts, for the objects found in the pixels and named from the texts.

Once the found classes have names (`cmal.data.found_names`), a phrase that names a colour and a
shape ("the mini aqua hoop"), a colour and a generic noun ("a huge black shape"), or a shape alone
matches the objects of its image with that colour and shape; their boxes say their size classes.
The word just before the colour (before the shape when no colour is named) is a *size word* of a
class when the phrases it starts nearly always match an object of that class (``MIN_PRESENCE``)
and clearly less often one of any other class (``MAX_OTHER``), over at least ``MIN_PHRASES``
phrases that match anything. "the" and "many" start phrases of every size; "huge" only phrases
that match a large object, even when a small one of that colour and shape is there too. Phrases
that match no object ("is there a mini pink star?" – "no") say nothing.

With the size words, strict anchors (`cmal.text.anchors`) read the sizes a domain's texts name in
its own words, as they read the Shapes world's "big" and "tiny".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import NamedTuple

from cmal.data.found_names import words_in_order
from cmal.text.anchors import is_generic, normalise

MIN_PHRASES = 10
"""Phrases matching some object a word must start before it may be a size word."""
MIN_PRESENCE = 0.95
"""Share of a size word's phrases that match an object of its class."""
MAX_OTHER = 0.6
"""Share of a size word's phrases that may match an object of any other class."""


class FoundObject(NamedTuple):
    """An object found in an image: its shape's and colour's names ("" for an unnamed class) and
    its size class."""

    shape: str
    colour: str
    size: str


def phrase_sizes(
    words: Sequence[str],
    objects: Sequence[FoundObject],
    shape_words: Mapping[str, str],
    colour_words: Mapping[str, str],
    generic_nouns: Collection[str],
) -> list[tuple[str, frozenset[str]]]:
    """(word before the description, size classes of the objects it matches) for each noun phrase
    of ``words`` naming a colour or a shape that matches some object of ``objects``.

    Args:
        shape_words, colour_words: surface word -> shape / colour name (plurals are stripped).
        generic_nouns: nouns of no shape ("object", "thing"), matched with a colour only.
    """
    out = []
    for i, word in enumerate(words):
        shape = normalise(word, shape_words)
        if shape is None and not is_generic(word, generic_nouns):
            continue
        before = i - 1
        colour = colour_words.get(words[before]) if before >= 0 else None
        if colour is not None:
            before -= 1
        if before < 0 or (shape is None and colour is None):
            continue
        sizes = frozenset(
            o.size
            for o in objects
            if (shape is None or o.shape == shape) and (colour is None or o.colour == colour)
        )
        if sizes:
            out.append((words[before], sizes))
    return out


def find_size_words(
    texts: Iterable[tuple[str, Sequence[FoundObject]]],
    shape_words: Mapping[str, str],
    colour_words: Mapping[str, str],
    generic_nouns: Collection[str],
) -> dict[str, str]:
    """Size words (surface word -> size class) read off ``texts`` (each text with its image's
    found objects), by the rule of the module docs."""
    phrases: Counter[str] = Counter()
    presence: dict[str, Counter[str]] = {}
    for text, objects in texts:
        for word, sizes in phrase_sizes(
            words_in_order(text), objects, shape_words, colour_words, generic_nouns
        ):
            phrases[word] += 1
            presence.setdefault(word, Counter()).update(sizes)
    found = {}
    for word, n in phrases.items():
        if n < MIN_PHRASES or word in shape_words or word in colour_words:
            continue
        shares = {size: count / n for size, count in presence[word].items()}
        best = max(shares, key=lambda s: shares[s])
        others = [share for size, share in shares.items() if size != best]
        if shares[best] >= MIN_PRESENCE and all(share <= MAX_OTHER for share in others):
            found[word] = best
    return found
