"""Names for the classes found in the pixels, read off the texts that come with the images.

A found class (`cmal.data.found_classes`) is a group of alike objects without a name. The folder's
task files say which words go with which images, and a word that names a kind of object is
mentioned mostly with images that hold that kind. For each word of at least ``MIN_MENTIONS``
texts and each class, the *lift* is how much likelier the class is present in the image of a
text that mentions the word than in the image of any text. A word *claims* its classes in order
of lift (the first lifted at least ``MIN_LIFT``, any further one at least ``MIN_EXTRA_LIFT``: one
kind the grouping split, e.g. by size) until one of them is present in ``MIN_COVERAGE`` of its
texts' images, and those classes together are present at least ``MIN_LIFT`` times as often with
the word as with any text; a word that gets there on no such classes claims none (a name is mostly about
what the picture shows; "is there a pink star?" – "no" is the exception). A kind in nearly every
image cannot be told by its words this way, and stays unnamed. Each class is named by the
claiming word of the most texts, and classes named alike are one kind. A class no word claims
takes the name that lifts it most, if by ``MIN_EXTRA_LIFT``: a part of a kind that its name had
covered enough without it (small pentagons, when nine in ten texts naming a pentagon show a large
one). A word that claims only classes of one name, and names none, is a synonym of that name
("hoop" for "ring"). A class still without a name stays unnamed.

Shapes and colours are named separately, each among its own classes. With the names, the regions
of the new objects are anchored to the words of the texts, as the bundled model's regions are to
the Shapes world's words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmal.data.formats import PARSERS, load

MIN_MENTIONS = 10
"""Texts a word must appear in before it may name a class."""
MIN_LIFT = 1.25
"""How much likelier a class must be present with a word than with any text to be claimed by it."""
MIN_EXTRA_LIFT = 1.1
"""The lift each further class a word claims needs (one kind split in several classes)."""
MIN_COVERAGE = 0.9
"""Share of a word's texts whose image holds one of the classes it claims."""
_WORD = re.compile(r"[a-z]+")


@dataclass
class ClassNames:
    """What `name_classes` found: a name per class ("" where none) and each other claiming word's name."""

    names: list[str]
    synonyms: dict[str, str] = field(default_factory=dict)  # surface word -> name


def words_in_order(text: str) -> list[str]:
    """The lower-case alphabetic words of a text, in order."""
    return _WORD.findall(text.lower())


def words(text: str) -> frozenset[str]:
    """The lower-case alphabetic words of a text."""
    return frozenset(words_in_order(text))


def folder_texts(folder: Path) -> list[tuple[Path, str]]:
    """(image, text) for every record of the task files in ``folder`` (VQA: the question and its
    answers; the other tasks: their text)."""
    from cmal.tasks import TASKS

    fields = {t.id: t.text_field for t in TASKS}
    out = []
    for task in (t for t in PARSERS if t in fields):
        path = folder / f"{task}.jsonl"
        if path.is_file():
            for r in load(path, task):
                extra = " ".join(r.answers) if task == "vqa" else ""
                out.append((r.image, f"{getattr(r, fields[task])} {extra}"))
    return out


def claimed_classes(lift: np.ndarray, mentioning: np.ndarray, everywhere: np.ndarray) -> list[int]:
    """The classes one word claims (see the module docs): ``lift`` per class; whether each class
    is in the image of each text mentioning the word (``mentioning``) and of each text
    (``everywhere``), both (texts, classes)."""
    claimed: list[int] = []
    for k in np.argsort(-lift, kind="stable").tolist():
        if lift[k] < (MIN_LIFT if not claimed else MIN_EXTRA_LIFT):
            return []
        claimed.append(k)
        covered = mentioning[:, claimed].any(1).mean()
        if covered >= MIN_COVERAGE:  # the kind as a whole must go with the word too
            return claimed if covered >= MIN_LIFT * everywhere[:, claimed].any(1).mean() else []
    return []


def name_classes(mentions: Iterable[tuple[frozenset[str], frozenset[int]]], count: int) -> ClassNames:
    """Name ``count`` classes from texts: each item is a text's words and the classes present in
    its image (see the module docs)."""
    texts = list(mentions)
    present = np.zeros((len(texts), count), bool)
    for i, (_, classes) in enumerate(texts):
        present[i, list(classes)] = True
    base = present.mean(0) if texts else np.zeros(count)
    mentioned = Counter(w for ws, _ in texts for w in ws)
    claims: dict[str, list[int]] = {}
    lifts: dict[str, np.ndarray] = {}
    for word, n in mentioned.items():
        if n >= MIN_MENTIONS:
            rows = np.array([word in ws for ws, _ in texts])
            lifts[word] = np.divide(present[rows].mean(0), base, out=np.zeros(count), where=base > 0)
            claims[word] = claimed_classes(lifts[word], present[rows], present)
    names = []
    for k in range(count):
        claimers = [w for w, claimed in claims.items() if k in claimed]
        names.append(max(claimers, key=lambda w: (mentioned[w], w)) if claimers else "")
    named = sorted(set(names) - {""})
    for k in range(count):  # a part of a kind its name covered without it (small pentagons)
        best = max(named, key=lambda w: lifts[w][k], default="")
        if not names[k] and best and lifts[best][k] >= MIN_EXTRA_LIFT:
            names[k] = best
    synonyms = {}
    for word, claimed in sorted(claims.items()):
        meant = {names[k] for k in claimed}
        if claimed and word not in names and len(meant) == 1:  # a word of two kinds is no synonym
            synonyms[word] = meant.pop()
    return ClassNames(names, synonyms)


def class_mentions(
    texts: Sequence[tuple[Path, str]], classes_of: dict[str, np.ndarray]
) -> list[tuple[frozenset[str], frozenset[int]]]:
    """Pair each text's words with the classes of its image's objects (``classes_of``: image path
    as a string -> class of each object found in it); texts of other images are left out."""
    return [
        (words(text), frozenset(int(c) for c in classes_of[str(image)]))
        for image, text in texts
        if str(image) in classes_of
    ]
