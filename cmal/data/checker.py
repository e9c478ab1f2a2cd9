"""An independent checker of Shapes labels: it reads only the text and the scene description.

The generator (`cmal.data.language`) knows what it meant to say; this module does not. It parses
each caption, statement, referring expression and question with its own small grammar and
lexicon (deliberately written apart from `cmal.data.vocab`) and evaluates it on the objects listed
in ``objects.jsonl``. Tests hold every generated label against it, and ``cmal data check DIR``
runs it over any dataset in the canonical format.

Semantics (the documented meaning of the language):

* counts are exact ("there are two circles" is false with three);
* an indefinite relation ("a red circle is left of a square") holds if some pair of distinct
  matching objects is in that relation; it is false only if every pair clearly is not;
* "A is left of B" holds when B's centre is more than 10% of the image side to the right of A's;
  within that margin the relation is ambiguous and a check reports it as an error;
* definite noun phrases ("the big box") must pick out exactly one object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARGIN = 0.1

_SHAPES = {
    "circle": "circle", "circles": "circle", "disc": "circle", "discs": "circle",
    "square": "square", "squares": "square", "box": "square", "boxes": "square",
    "triangle": "triangle", "triangles": "triangle",
    "diamond": "diamond", "diamonds": "diamond", "rhombus": "diamond", "rhombuses": "diamond",
    "cross": "cross", "crosses": "cross",
    # the shifted domain
    "star": "star", "stars": "star", "hexagon": "hexagon", "hexagons": "hexagon",
    "pentagon": "pentagon", "pentagons": "pentagon",
    "ring": "ring", "rings": "ring", "hoop": "ring", "hoops": "ring",
}  # fmt: skip
_PLURAL_NOUNS = {
    "circles", "discs", "squares", "boxes", "triangles", "diamonds", "rhombuses", "crosses",
    "objects", "shapes", "things", "stars", "hexagons", "pentagons", "rings", "hoops",
}  # fmt: skip
_GENERIC = {"object", "objects", "shape", "shapes", "thing", "things"}
_COLOURS = {
    "red": "red", "green": "green", "blue": "blue", "yellow": "yellow",
    "purple": "purple", "violet": "purple", "orange": "orange",
    "pink": "pink", "rose": "pink", "cyan": "cyan", "aqua": "cyan", "brown": "brown",
    "black": "black", "lime": "lime",
}  # fmt: skip
_SIZES = {
    "small": "small", "little": "small", "tiny": "small", "mini": "small",
    "large": "large", "big": "large", "huge": "large",
}  # fmt: skip
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_RELATIONS = {
    "left of": "left", "to the left of": "left",
    "right of": "right", "to the right of": "right",
    "above": "above", "below": "below", "under": "below",
}  # fmt: skip
_SUPERLATIVES = {
    "leftmost": "left", "rightmost": "right", "topmost": "above", "highest": "above",
    "bottommost": "below", "lowest": "below",
}  # fmt: skip
_UNKNOWABLE = {"heavy", "hot", "cold", "soft", "fragile", "expensive", "wet", "smooth"}
_MATERIALS = {"wood", "metal", "glass", "plastic", "paper", "stone", "rubber"}

_NP = r"(?:(?:a|an|the|any) )?(?:(?:{mods}) )*(?:{nouns})".format(
    mods="|".join(sorted([*_COLOURS, *_SIZES], key=len, reverse=True)),
    nouns="|".join(sorted([*_SHAPES, *_GENERIC], key=len, reverse=True)),
)
_REL = "|".join(sorted(_RELATIONS, key=len, reverse=True))
_NUM = "|".join(_NUMBERS)


class CheckError(ValueError):
    """The text cannot be parsed, or its meaning is ambiguous or presupposes something false."""


@dataclass(frozen=True)
class Obj:
    """An object of the scene description."""

    shape: str
    colour: str
    size: str
    box: tuple[float, float, float, float]

    @property
    def cx(self) -> float:
        """Centre x in pixels."""
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        """Centre y in pixels (y grows downwards)."""
        return (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class NounPhrase:
    """A parsed noun phrase: shape, colour and size (None = any) and whether it is plural."""

    shape: str | None
    colour: str | None
    size: str | None
    plural: bool

    def matches(self, o: Obj) -> bool:
        """Whether ``o`` has every property the phrase names."""
        return (
            (self.shape is None or o.shape == self.shape)
            and (self.colour is None or o.colour == self.colour)
            and (self.size is None or o.size == self.size)
        )


class Scene:
    """A scene rebuilt from one ``objects.jsonl`` record."""

    def __init__(self, record: Mapping[str, Any]):
        self.side = float(max(record.get("width", 128), record.get("height", 128)))
        self.objects = [Obj(o["tag"], o["attribute"], o["size"], tuple(o["box"])) for o in record["objects"]]

    # ------------------------------------------------------------ primitives
    def matching(self, np_: NounPhrase) -> list[Obj]:
        """The objects of the scene that ``np_`` describes."""
        return [o for o in self.objects if np_.matches(o)]

    def the(self, np_: NounPhrase) -> Obj:
        """The one object a definite description picks out; `CheckError` unless exactly one matches."""
        found = self.matching(np_)
        if len(found) != 1:
            raise CheckError(f"definite description matches {len(found)} objects")
        return found[0]

    def rel(self, a: Obj, b: Obj, r: str) -> bool | None:
        """Whether ``a`` is ``r`` of ``b``: True, False, or None when the centres are within the margin."""
        m = MARGIN * self.side
        d = {"left": b.cx - a.cx, "right": a.cx - b.cx, "above": b.cy - a.cy, "below": a.cy - b.cy}[r]
        return True if d > m else False if d < -m else None

    # ------------------------------------------------------------ statements
    def truth(self, text: str) -> bool | None:
        """Truth of a statement: True, False, or None when the picture cannot settle it."""
        if (nps := listing_items(text)) is not None:
            return len(nps) == len(self.objects) and assignable(nps, self.objects)
        s = _clean(text)
        if m := re.fullmatch(rf"({_NUM}) of the (?:objects|shapes|things) (?:is|are) (\w+)", s):
            colour = _COLOURS[m[2]]
            return sum(o.colour == colour for o in self.objects) == _NUMBERS[m[1]]
        if m := re.fullmatch(rf"(?:there is no|no) ({_NP})(?: is visible)?", s):
            return not self.matching(parse_np(m[1]))
        if m := re.fullmatch(rf"(?:there are no|the image does not contain any) ({_NP})", s):
            return not self.matching(parse_np(m[1]))
        if m := re.fullmatch(
            rf"(?:there (?:is|are)|the (?:image|picture) (?:contains|shows)|i count) ({_NUM}) ({_NP})", s
        ):
            return len(self.matching(parse_np(m[2]))) == _NUMBERS[m[1]]
        if m := re.fullmatch(rf"({_NUM}) ({_NP}) (?:is|are) visible", s):
            return len(self.matching(parse_np(m[2]))) == _NUMBERS[m[1]]
        if m := re.fullmatch(rf"(?:there is|the image contains|the picture shows|one can spot) ({_NP})", s):
            return bool(self.matching(parse_np(m[1])))
        if m := re.fullmatch(rf"({_NP}) (?:is visible|can be seen)", s):
            return bool(self.matching(parse_np(m[1])))
        if m := re.fullmatch(rf"({_NP}) is ({_REL}) ({_NP})", s):
            return self._exists_rel(parse_np(m[1]), _RELATIONS[m[2]], parse_np(m[3]))
        if m := re.fullmatch(rf"({_REL}) ({_NP}) there is ({_NP})", s):
            return self._exists_rel(parse_np(m[3]), _RELATIONS[m[1]], parse_np(m[2]))
        if m := re.fullmatch(rf"({_NP}) is (?:made of (\w+)|(\w+))", s):
            np_ = parse_np(m[1])
            if m[2] in _MATERIALS or m[3] in _UNKNOWABLE:
                self._presuppose(np_, m[1])
                return None
            if m[3] in _COLOURS:
                return self.the(np_).colour == _COLOURS[m[3]]
            if m[3] in _SIZES:
                return self.the(np_).size == _SIZES[m[3]]
        raise CheckError(f"cannot parse statement {text!r}")

    def _presuppose(self, np_: NounPhrase, words: str) -> None:
        if words.startswith("the "):
            self.the(np_)
        elif not self.matching(np_):
            raise CheckError("neutral hypothesis about an object that is not there")

    def _exists_rel(self, a: NounPhrase, r: str, b: NounPhrase) -> bool:
        values = [self.rel(x, y, r) for x in self.matching(a) for y in self.matching(b) if x is not y]
        if any(v is True for v in values):
            return True
        if all(v is False for v in values):
            return False
        raise CheckError("relation is ambiguous (within the margin) for some pair")

    # ------------------------------------------------------------ references
    def resolve(self, expression: str) -> Obj:
        """The one object a referring expression picks out."""
        s = _clean(expression)
        sup = "|".join(_SUPERLATIVES)
        if m := re.fullmatch(rf"the ({sup}) ({_NP})", s):
            group = self.matching(parse_np(m[2]))
            r = _SUPERLATIVES[m[1]]
            if len(group) < 2:
                raise CheckError("superlative over fewer than two objects")
            best = [o for o in group if all(self.rel(o, p, r) is True for p in group if p is not o)]
            if len(best) != 1:
                raise CheckError("superlative does not single out one object clearly")
            return best[0]
        if m := re.fullmatch(rf"the ({_NP}) (?:that is )?({_REL}) the ({_NP}) and ({_REL}) the ({_NP})", s):
            first, second = self.the(parse_np(m[3])), self.the(parse_np(m[5]))
            r1, r2 = _RELATIONS[m[2]], _RELATIONS[m[4]]
            cands = [o for o in self.matching(parse_np(m[1])) if o is not first and o is not second]
            both = [(self.rel(o, first, r1), self.rel(o, second, r2)) for o in cands]
            hits = [o for o, (v1, v2) in zip(cands, both, strict=True) if v1 is True and v2 is True]
            unclear = [v for v in both if False not in v and v != (True, True)]
            if len(hits) != 1 or unclear:
                raise CheckError("two-landmark expression is not unique and clear")
            return hits[0]
        if m := re.fullmatch(rf"the ({_NP}) (?:that is )?({_REL}) the ({_NP})", s):
            landmark = self.the(parse_np(m[3]))
            r = _RELATIONS[m[2]]
            cands = [o for o in self.matching(parse_np(m[1])) if o is not landmark]
            values = [self.rel(o, landmark, r) for o in cands]
            hits = [o for o, v in zip(cands, values, strict=True) if v is True]
            if len(hits) != 1 or any(v is None for v in values):
                raise CheckError("relational expression is not unique and clear")
            return hits[0]
        if m := re.fullmatch(rf"the ({_NP})", s):
            return self.the(parse_np(m[1]))
        raise CheckError(f"cannot parse referring expression {expression!r}")

    def referent_box(self, expression: str) -> list[float] | None:
        """The box of the object an expression picks out, or None when it is a plain description
        that matches no object ("the big red circle" where there is none)."""
        s = _clean(expression)
        if (m := re.fullmatch(rf"the ({_NP})", s)) and not self.matching(parse_np(m[1])):
            return None
        return list(self.resolve(expression).box)

    # ------------------------------------------------------------ questions
    def answer(self, question: str) -> str:
        """The answer to a question, as a canonical word or a digit string."""
        s = _clean(question)
        if m := re.fullmatch(
            rf"(?:(?:what colou?r|which colour|which hue) is|what is the colou?r of) ({_NP})", s
        ):
            return self.the(parse_np(m[1])).colour
        if m := re.fullmatch(rf"(?:(?:what (?:kind of )?|which )shape is|what is the shape of) ({_NP})", s):
            return self.the(parse_np(m[1])).shape
        if m := re.fullmatch(
            rf"(?:(?:what size is|how big is|what is the size of) ({_NP})"
            rf"|is ({_NP}) (?:small or large|big or small))",
            s,
        ):
            return self.the(parse_np(m[1] or m[2])).size
        if m := re.fullmatch(
            rf"(?:how many ({_NP}) (?:are there|can you see|are in the picture|does the picture show)"
            rf"|what is the number of ({_NP}))",
            s,
        ):
            np_ = parse_np(m[1] or m[2])
            if not np_.plural:
                raise CheckError("count question with a singular noun")
            return str(len(self.matching(np_)))
        if m := re.fullmatch(rf"(?:is there|are there any|do you see|does the picture show) ({_NP})", s):
            return "yes" if self.matching(parse_np(m[1])) else "no"
        if m := re.fullmatch(rf"are any ({_NP}) present", s):
            return "yes" if self.matching(parse_np(m[1])) else "no"
        if m := re.fullmatch(rf"(?:is ({_NP}) (?:located )?|would you say ({_NP}) is )({_REL}) ({_NP})", s):
            a, b = self.the(parse_np(m[1] or m[2])), self.the(parse_np(m[4]))
            v = self.rel(a, b, _RELATIONS[m[3]])
            if v is None:
                raise CheckError("relation question is ambiguous")
            return "yes" if v else "no"
        raise CheckError(f"cannot parse question {question!r}")


def listing_items(text: str) -> list[NounPhrase] | None:
    """The noun phrases of a listing statement ("a scene with two shapes: a red circle and a blue
    square."), or None when ``text`` is not a listing."""
    m = re.fullmatch(
        rf"(?:an image with|a picture of|a scene with|a photo of|a view of) ({_NUM}) "
        r"(?:objects|shapes): (.+)",
        _clean(text),
    )
    if m is None:
        return None
    nps = [parse_np(i) for i in re.split(r", | and ", m[2])]
    if len(nps) != _NUMBERS[m[1]]:
        raise CheckError("listing count disagrees with its items")
    return nps


def parse_np(words: str) -> NounPhrase:
    """Parse a noun phrase such as "the big violet boxes" into its constraints."""
    tokens = words.split()
    if tokens and tokens[0] in ("a", "an", "the", "any"):
        if tokens[0] in ("a", "an") and len(tokens) > 1:
            want_an = tokens[1][0] in "aeiou"
            if want_an != (tokens[0] == "an"):
                raise CheckError(f"wrong article in {words!r}")
        tokens = tokens[1:]
    if not tokens:
        raise CheckError("empty noun phrase")
    *mods, noun = tokens
    colour = size = None
    for w in mods:
        if w in _COLOURS and colour is None:
            colour = _COLOURS[w]
        elif w in _SIZES and size is None:
            size = _SIZES[w]
        else:
            raise CheckError(f"bad modifier {w!r} in {words!r}")
    if noun in _SHAPES:
        shape: str | None = _SHAPES[noun]
    elif noun in _GENERIC:
        shape = None
    else:
        raise CheckError(f"bad noun {noun!r} in {words!r}")
    return NounPhrase(shape, colour, size, plural=noun in _PLURAL_NOUNS)


def _clean(text: str) -> str:
    return text.strip().rstrip(".?").strip()


def assignable(nps: list[NounPhrase], objs: list[Obj]) -> bool:
    """Whether each noun phrase can be given its own object so that every object is named once."""
    if not nps:
        return not objs
    return any(
        nps[0].matches(o) and assignable(nps[1:], objs[:i] + objs[i + 1 :]) for i, o in enumerate(objs)
    )


_VE = {True: "entailment", False: "contradiction", None: "neutral"}


def check_dataset(folder: Path) -> Iterable[str]:
    """Check every label in a Shapes dataset folder; yields one message per wrong label."""
    scenes: dict[str, Scene] = {}
    with (folder / "objects.jsonl").open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            scenes[rec["image"]] = Scene(rec)

    def each(name: str) -> Iterable[tuple[int, dict[str, Any], Scene]]:
        with (folder / name).open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                rec = json.loads(line)
                yield n, rec, scenes[rec["image"]]

    # each file's check: (record, scene) -> (label the checker derives, label the file gives)
    checks: dict[str, Callable[[dict[str, Any], Scene], tuple[Any, Any]]] = {
        "captions.jsonl": lambda r, sc: (sc.truth(r["caption"]), True),
        "itm.jsonl": lambda r, sc: (sc.truth(r["text"]), r["match"]),
        "ve.jsonl": lambda r, sc: (_VE[sc.truth(r["hypothesis"])], r["label"]),
        "rec.jsonl": lambda r, sc: (sc.referent_box(r["expression"]), r["box"]),
        "vqa.jsonl": lambda r, sc: (sc.answer(r["question"]), r["answers"][0]),
    }
    for name, check in checks.items():
        for n, rec, scene in each(name):
            try:
                got, want = check(rec, scene)
            except CheckError as e:
                yield f"{name}:{n}: {e}"
                continue
            if got != want:
                yield f"{name}:{n}: label {want!r} but the checker finds {got!r}"
