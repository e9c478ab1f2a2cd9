"""Templated language about a scene: statements, referring expressions and questions.

Every text is built from a structured meaning that is evaluated on the scene here, so the label of
each example is computed, not assumed. `cmal.data.checker` re-derives every label from the text
alone, with its own parser, and the tests hold the two against each other.

Over 400 lines on purpose: `Speaker` keeps every template beside the meaning it evaluates and the
phrase builders the templates share, so a template and its label cannot drift apart; split by
task, the shared builders would have to be passed around or duplicated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from cmal.data.domain import Domain
from cmal.data.scene import OPPOSITE, RELATIONS, Scene, SceneObject, relation, sample_scene
from cmal.data.vocab import GENERIC_NOUNS, NUMBER_WORDS, SIZE_WORDS, SIZES

T = TypeVar("T")

RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "under"),
}
# the relations on the other axis than each one (a non-extreme expression names one of each)
OTHER_AXIS: dict[str, tuple[str, str]] = {
    "left": ("above", "below"),
    "right": ("above", "below"),
    "above": ("left", "right"),
    "below": ("left", "right"),
}
# what kinds of referring expression the generator writes (rec.jsonl's ``kind``)
# ("none": an expression that names nothing in the image, box null)
REC_KINDS = ("plain", "relational", "superlative", "non-extreme", "none")
SUPERLATIVES: dict[str, tuple[str, ...]] = {
    "left": ("leftmost",),
    "right": ("rightmost",),
    "above": ("topmost", "highest"),
    "below": ("bottommost", "lowest"),
}
GEOMETRY_CONCEPTS: dict[str, str] = {
    **{w: f"size:{size}" for size, words in SIZE_WORDS.items() for w in words},
    **{
        w: f"{kind}:{rel}"
        for kind, table in (("relation", RELATION_PHRASES), ("superlative", SUPERLATIVES))
        for rel, phrases in table.items()
        for phrase in phrases
        for w in phrase.split()
        if w not in ("of", "to", "the")
    },
}
"""Words whose meaning is a size or a position, and what they mean ("tiny" -> "size:small", "under"
-> "relation:below"): a model can tell them apart only by box geometry."""
MATERIALS = ("wood", "metal", "glass", "plastic", "paper", "stone", "rubber")
PROPERTIES = ("heavy", "hot", "cold", "soft", "fragile", "expensive", "wet", "smooth")
"""Things a picture cannot show: hypotheses about them are `neutral`."""


@dataclass(frozen=True)
class Desc:
    """A description of objects: any of shape, colour, size may be left open (None)."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        """Whether ``obj`` has every property the description does not leave open."""
        return (
            (self.shape is None or obj.shape == self.shape)
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
        )


class Speaker:
    """Produces texts about one scene, drawing every choice from ``rng``."""

    def __init__(
        self,
        scene: Scene,
        rng: np.random.Generator,
        forbidden_pairs: Iterable[tuple[str, str]] = (),
    ):
        """
        Args:
            scene: the scene to talk about.
            rng: random generator for every choice.
            forbidden_pairs: (colour, shape) pairs no text may name, e.g. the compositional
                hold-out outside its own split, so that not even a false statement leaks them.
        """
        self.scene = scene
        self.rng = rng
        self.objects = scene.objects
        self.d = scene.domain  # words and templates
        self._forbidden = _pair_pattern(forbidden_pairs, self.d)

    def allowed(self, text: str) -> bool:
        """Whether ``text`` names none of the forbidden colour–shape pairs."""
        return self._forbidden is None or self._forbidden.search(text) is None

    # ----------------------------------------------------------------- helpers
    def pick(self, options: Sequence[T]) -> T:
        """One of ``options``, drawn uniformly."""
        return options[int(self.rng.integers(len(options)))]

    def template(self, family: str) -> str:
        """One of the domain's templates of ``family`` (drawn only when there is a choice)."""
        options = self.d.wording[family]
        return options[0] if len(options) == 1 else self.pick(options)

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return bool(self.rng.random() < p)

    def matching(self, desc: Desc) -> list[SceneObject]:
        """The objects of the scene that ``desc`` describes."""
        return [o for o in self.objects if desc.matches(o)]

    def noun_phrase(self, desc: Desc, plural: bool = False) -> str:
        """Surface words for ``desc`` without a determiner, e.g. "big violet boxes"."""
        words = []
        if desc.size:
            words.append(self.pick(self.d.size_words[desc.size]))
        if desc.colour:
            words.append(self.pick(self.d.colour_words[desc.colour]))
        noun = self.pick(self.d.shape_words[desc.shape]) if desc.shape else self.pick(GENERIC_NOUNS)
        words.append(self.d.plurals[noun] if plural else noun)
        return " ".join(words)

    def indefinite(self, desc: Desc) -> str:
        """``desc`` with "a" or "an" in front, e.g. "a big violet box"."""
        phrase = self.noun_phrase(desc)
        return ("an " if phrase[0] in "aeiou" else "a ") + phrase

    def full_desc(self, obj: SceneObject, with_size: bool | None = None) -> Desc:
        """``obj`` described by shape and colour, plus size if ``with_size`` (None: 40% of the time)."""
        if with_size is None:
            with_size = self.chance(0.4)
        return Desc(obj.shape, obj.colour, obj.size if with_size else None)

    def unique_descs(self, obj: SceneObject, exclude: str | None = None) -> list[Desc]:
        """All descriptions that pick out exactly ``obj``; ``exclude`` names a field left open."""
        out = []
        for use_shape in (True, False):
            for use_colour in (True, False):
                for use_size in (True, False):
                    if not (use_shape or use_colour or use_size):
                        continue
                    d = Desc(
                        obj.shape if use_shape and exclude != "shape" else None,
                        obj.colour if use_colour and exclude != "colour" else None,
                        obj.size if use_size and exclude != "size" else None,
                    )
                    if d == Desc():
                        continue
                    if self.matching(d) == [obj] and d not in out:
                        out.append(d)
        return out

    def relation_truth(self, d1: Desc, rel: str, d2: Desc) -> bool | None:
        """Whether some object matching d1 is ``rel`` of another matching d2.

        True if some pair clearly is; False if every pair clearly is not (and there is at least one
        pair or none at all); None otherwise (ambiguous, never stated).
        """
        pairs = [(a, b) for a in self.matching(d1) for b in self.matching(d2) if a is not b]
        values = [relation(a, b, rel, self.scene.size) for a, b in pairs]
        if any(v is True for v in values):
            return True
        if all(v is False for v in values):
            return False
        return None

    def clear_pairs(self) -> list[tuple[SceneObject, str, SceneObject]]:
        """(a, rel, b) for every ordered pair and relation that clearly holds."""
        return [
            (a, rel, b)
            for a in self.objects
            for b in self.objects
            if a is not b
            for rel in RELATIONS
            if relation(a, b, rel, self.scene.size) is True
        ]

    # -------------------------------------------------------------- statements
    def statement(self, kind: str, want: bool) -> str | None:
        """A statement of family ``kind`` whose truth is ``want``; None if none can be made."""
        maker: Callable[[bool], str | None] = getattr(self, f"_st_{kind}")
        for _ in range(30):
            result = maker(want)
            if result is not None and self.allowed(result):
                return result
        return None

    def _st_exists(self, want: bool) -> str | None:
        desc = self._desc_with_count(positive=want)
        if desc is None:
            return None
        return self.template("exists").format(a=self.indefinite(desc))

    def _st_absent(self, want: bool) -> str | None:
        desc = self._desc_with_count(positive=not want)
        if desc is None:
            return None
        if self.chance(0.5):
            return self.pick(("there is no {np}.", "no {np} is visible.")).format(np=self.noun_phrase(desc))
        return self.pick(("there are no {nps}.", "the image does not contain any {nps}.")).format(
            nps=self.noun_phrase(desc, plural=True)
        )

    def _st_count(self, want: bool) -> str | None:
        desc = self._random_desc()
        true_n = len(self.matching(desc))
        if want:
            n = true_n
        else:
            choices = [k for k in range(1, 7) if k != true_n and abs(k - true_n) <= 2]
            n = self.pick(choices)
        if n == 0:
            return None
        if desc.shape is None and desc.size is None and desc.colour and self.chance(0.5):
            verb = "is" if n == 1 else "are"
            things = self.pick(("objects", "shapes", "things"))
            return f"{NUMBER_WORDS[n]} of the {things} {verb} {self.pick(self.d.colour_words[desc.colour])}."
        if n == 1:
            return self.pick(("there is one {np}.", "the image contains one {np}.")).format(
                np=self.noun_phrase(desc)
            )
        return self.template("count_many").format(n=NUMBER_WORDS[n], nps=self.noun_phrase(desc, plural=True))

    def _st_relation(self, want: bool) -> str | None:
        pairs = self.clear_pairs()
        if not pairs:
            return None
        a, rel, b = self.pick(pairs)
        d1, d2 = self.full_desc(a), self.full_desc(b)
        if not want:
            perturbed = self._perturb_relation(d1, rel, d2)
            if perturbed is None:
                return None
            d1, rel, d2 = perturbed
        if self.relation_truth(d1, rel, d2) is not want:
            return None
        phrase = self.pick(RELATION_PHRASES[rel])
        if self.chance(0.7):
            return f"{self.indefinite(d1)} is {phrase} {self.indefinite(d2)}."
        return f"{phrase} {self.indefinite(d2)} there is {self.indefinite(d1)}."

    def _perturb_relation(self, d1: Desc, rel: str, d2: Desc) -> tuple[Desc, str, Desc] | None:
        how = self.pick(("flip", "flip", "colour", "shape"))
        if how == "flip":
            return d1, OPPOSITE[rel], d2
        which = self.pick((0, 1))
        target = (d1, d2)[which]
        if how == "colour":
            target = Desc(
                target.shape, self.pick([c for c in self.d.colours if c != target.colour]), target.size
            )
        else:
            target = Desc(
                self.pick([s for s in self.d.shapes if s != target.shape]), target.colour, target.size
            )
        return (target, rel, d2) if which == 0 else (d1, rel, target)

    def _st_foreign(self, want: bool) -> str | None:
        """An easy negative: the full listing of another random scene."""
        if want:
            raise ValueError("foreign statements are negatives only")
        other = sample_scene(self.rng, self.scene.size, compositional=False, domain=self.d)
        return self._listing(list(other.objects), want, with_size=self.chance(0.3))

    def _st_listing(self, want: bool) -> str | None:
        objs = list(self.objects)
        with_size = self.chance(0.3)
        if not want:
            how = self.pick(("colour", "shape", "size"))
            k = int(self.rng.integers(len(objs)))
            o = objs[k]
            if how == "colour":
                o = SceneObject(
                    o.shape, self.pick([c for c in self.d.colours if c != o.colour]), o.size, o.box
                )
            elif how == "shape":
                o = SceneObject(
                    self.pick([s for s in self.d.shapes if s != o.shape]), o.colour, o.size, o.box
                )
            else:
                o = SceneObject(o.shape, o.colour, self.pick([s for s in SIZES if s != o.size]), o.box)
                with_size = True
            objs[k] = o
        return self._listing(objs, want, with_size)

    def _listing(self, objs: list[SceneObject], want: bool, with_size: bool) -> str | None:
        descs = [Desc(o.shape, o.colour, o.size if with_size else None) for o in objs]
        order = self.rng.permutation(len(descs))
        items = [self.indefinite(descs[int(k)]) for k in order]
        listing = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        n = len(items)
        head = self.template("listing_head")
        text = f"{head} {NUMBER_WORDS[n]} {self.pick(('objects', 'shapes'))}: {listing}."
        if self._listing_truth(descs) is not want:
            return None
        return text

    def _listing_truth(self, descs: list[Desc]) -> bool:
        if len(descs) != len(self.objects):
            return False
        remaining = list(self.objects)
        return _assign(descs, remaining)

    def _st_attribute(self, want: bool) -> str | None:
        obj = self.pick(self.objects)
        field = self.pick(("colour", "size"))
        descs = self.unique_descs(obj, exclude=field)
        descs = [d for d in descs if d.shape is not None] or descs
        if not descs:
            return None
        desc = self.pick(descs)
        value = getattr(obj, field)
        if not want:
            value = self.pick([v for v in (self.d.colours if field == "colour" else SIZES) if v != value])
        words = self.d.colour_words[value] if field == "colour" else self.d.size_words[value]
        return f"the {self.noun_phrase(desc)} is {self.pick(words)}."

    def neutral(self) -> str:
        """A hypothesis about an existing object that a picture cannot settle."""
        obj = self.pick(self.objects)
        descs = self.unique_descs(obj)
        if descs and self.chance(0.6):
            np_ = "the " + self.noun_phrase(self.pick(descs))
        else:
            np_ = self.indefinite(self.full_desc(obj))
        if self.chance(0.5):
            return f"{np_} is made of {self.pick(MATERIALS)}."
        return f"{np_} is {self.pick(PROPERTIES)}."

    def _random_desc(self) -> Desc:
        """A description biased towards objects that are present."""
        if self.chance(0.75):
            obj = self.pick(self.objects)
            mode = self.pick(("shape", "shape", "colour", "both", "all"))
            if mode == "all":
                return Desc()
            return Desc(
                obj.shape if mode in ("shape", "both") else None,
                obj.colour if mode in ("colour", "both") else None,
            )
        return Desc(self.pick(self.d.shapes), self.pick(self.d.colours) if self.chance(0.5) else None)

    def _desc_with_count(self, positive: bool) -> Desc | None:
        for _ in range(20):
            if positive:
                obj = self.pick(self.objects)
                d = self.pick(
                    (
                        Desc(obj.shape, obj.colour),
                        Desc(obj.shape),
                        Desc(obj.shape, obj.colour, obj.size),
                        Desc(None, obj.colour),
                    )
                )
            else:
                d = Desc(self.pick(self.d.shapes), self.pick(self.d.colours) if self.chance(0.7) else None)
                if self.chance(0.2):
                    d = Desc(d.shape, d.colour, self.pick(SIZES))
            if bool(self.matching(d)) == positive:
                return d
        return None

    # ----------------------------------------------------- referring expressions
    def referring_expression(self, obj: SceneObject) -> tuple[str, str] | None:
        """A phrase that picks out exactly ``obj`` and its kind (one of `REC_KINDS`); None if the
        language has none for it."""
        options: list[tuple[str, str]] = []
        plain = self.unique_descs(obj)
        if plain:
            options.append(("the " + self.noun_phrase(self.pick(plain)), "plain"))
        for kind, make in (
            ("relational", self._relational_expression),
            ("superlative", self._superlative_expression),
        ):
            expression = make(obj)
            if expression:
                options.append((expression, kind))
        # few objects have a non-extreme expression (about one in eight): one that has is always
        # named by it, so that the kind is learnt and measured
        hard = self._non_extreme_expression(obj)
        if hard:
            return hard, "non-extreme"
        return self.pick(options) if options else None

    def absent_expression(self) -> str | None:
        """A near miss that names no object of the scene: an object's description with its colour,
        shape or size changed ("the big red circle" beside a small red circle); None if none found."""
        for _ in range(20):
            obj = self.pick(self.objects)
            changed = self.pick(("colour", "shape", "size"))
            d = self.full_desc(obj, with_size=changed == "size" or None)
            if changed == "colour":
                d = Desc(d.shape, self.pick([c for c in self.d.colours if c != obj.colour]), d.size)
            elif changed == "shape":
                d = Desc(self.pick([x for x in self.d.shapes if x != obj.shape]), d.colour, d.size)
            else:
                d = Desc(d.shape, d.colour, self.pick([z for z in SIZES if z != obj.size]))
            text = "the " + self.noun_phrase(d)
            if not self.matching(d) and self.allowed(text):
                return text
        return None

    def _relational_expression(self, obj: SceneObject) -> str | None:
        candidates = []
        for landmark in self.objects:
            if landmark is obj:
                continue
            lm_descs = self.unique_descs(landmark)
            if not lm_descs:
                continue
            for rel in RELATIONS:
                if relation(obj, landmark, rel, self.scene.size) is not True:
                    continue
                for d in (Desc(obj.shape), Desc(obj.shape, obj.colour), Desc(None, obj.colour)):
                    others = [o for o in self.matching(d) if o is not obj and o is not landmark]
                    if all(relation(o, landmark, rel, self.scene.size) is False for o in others):
                        candidates.append((d, rel, self.pick(lm_descs)))
        if not candidates:
            return None
        d, rel, lm = self.pick(candidates)
        phrase = self.pick(RELATION_PHRASES[rel])
        glue = self.pick(("", "that is "))
        return f"the {self.noun_phrase(d)} {glue}{phrase} the {self.noun_phrase(lm)}"

    def _non_extreme_expression(self, obj: SceneObject) -> str | None:
        """An expression with two landmarks on the two axes ("the circle left of the square and above
        the cross") for a target that is not the extreme of its kind in the first direction: another
        of its kind lies further that way, so "the leftmost circle" would name another object."""
        candidates = []
        landmarks = [(o, descs) for o in self.objects if o is not obj and (descs := self.unique_descs(o))]
        for d in (Desc(obj.shape), Desc(obj.shape, obj.colour), Desc(None, obj.colour)):
            group = [o for o in self.matching(d) if o is not obj]
            for rel1 in RELATIONS:
                if not any(relation(o, obj, rel1, self.scene.size) is True for o in group):
                    continue  # obj is the extreme of its kind that way
                for lm1, descs1 in landmarks:
                    if relation(obj, lm1, rel1, self.scene.size) is not True:
                        continue
                    for rel2 in OTHER_AXIS[rel1]:
                        for lm2, descs2 in landmarks:
                            if lm2 is lm1 or relation(obj, lm2, rel2, self.scene.size) is not True:
                                continue
                            others = [o for o in group if o is not lm1 and o is not lm2]
                            # every other one of its kind clearly fails one of the two relations
                            if all(
                                relation(o, lm1, rel1, self.scene.size) is False
                                or relation(o, lm2, rel2, self.scene.size) is False
                                for o in others
                            ) and any(relation(o, obj, rel1, self.scene.size) is True for o in others):
                                candidates.append((d, rel1, self.pick(descs1), rel2, self.pick(descs2)))
        if not candidates:
            return None
        d, rel1, first, rel2, second = self.pick(candidates)
        glue = self.pick(("", "that is "))
        phrase1, phrase2 = self.pick(RELATION_PHRASES[rel1]), self.pick(RELATION_PHRASES[rel2])
        return (
            f"the {self.noun_phrase(d)} {glue}{phrase1} the {self.noun_phrase(first)} "
            f"and {phrase2} the {self.noun_phrase(second)}"
        )

    def _superlative_expression(self, obj: SceneObject) -> str | None:
        candidates = []
        for d in (Desc(), Desc(obj.shape), Desc(None, obj.colour), Desc(obj.shape, obj.colour)):
            group = self.matching(d)
            if len(group) < 2:
                continue
            for rel in RELATIONS:
                if all(relation(obj, o, rel, self.scene.size) is True for o in group if o is not obj):
                    candidates.append((d, rel))
        if not candidates:
            return None
        d, rel = self.pick(candidates)
        return f"the {self.pick(SUPERLATIVES[rel])} {self.noun_phrase(d)}"

    # ------------------------------------------------------------------ VQA
    def question(self, kind: str) -> tuple[str, str] | None:
        """A (question, answer) pair of type ``kind``; None if the scene allows none."""
        maker: Callable[[], tuple[str, str] | None] = getattr(self, f"_q_{kind}")
        for _ in range(10):
            qa = maker()
            if qa is not None and self.allowed(qa[0]):
                return qa
        return None

    def _q_colour(self) -> tuple[str, str] | None:
        obj = self.pick(self.objects)
        descs = self.unique_descs(obj, exclude="colour")
        if not descs:
            return None
        t = self.template("q_colour")
        return t.format(np=self.noun_phrase(self.pick(descs))), obj.colour

    def _q_shape(self) -> tuple[str, str] | None:
        obj = self.pick(self.objects)
        descs = self.unique_descs(obj, exclude="shape")
        if not descs:
            return None
        t = self.template("q_shape")
        return t.format(np=self.noun_phrase(self.pick(descs))), obj.shape

    def _q_size(self) -> tuple[str, str] | None:
        obj = self.pick(self.objects)
        descs = self.unique_descs(obj, exclude="size")
        if not descs:
            return None
        t = self.template("q_size")
        return t.format(np=self.noun_phrase(self.pick(descs))), obj.size

    def _q_count(self) -> tuple[str, str] | None:
        desc = self._random_desc()
        t = self.template("q_count")
        return t.format(nps=self.noun_phrase(desc, plural=True)), str(len(self.matching(desc)))

    def _q_exists(self) -> tuple[str, str] | None:
        want = self.chance(0.5)
        desc = self._desc_with_count(positive=want)
        if desc is None:
            return None
        if self.chance(0.5):
            return self.template("q_exists_one").format(a=self.indefinite(desc)), "yes" if want else "no"
        nps = self.noun_phrase(desc, plural=True)
        return self.template("q_exists_many").format(nps=nps), "yes" if want else "no"

    def _q_relation(self) -> tuple[str, str] | None:
        pairs = [(a, r, b) for a, r, b in self.clear_pairs() if self.unique_descs(a) and self.unique_descs(b)]
        if not pairs:
            return None
        a, rel, b = self.pick(pairs)
        want = self.chance(0.5)
        if not want:
            rel = OPPOSITE[rel]
        phrase = self.pick(RELATION_PHRASES[rel])
        np1 = self.noun_phrase(self.pick(self.unique_descs(a)))
        np2 = self.noun_phrase(self.pick(self.unique_descs(b)))
        question = self.template("q_relation").format(np1=np1, phrase=phrase, np2=np2)
        return question, "yes" if want else "no"


def _pair_pattern(pairs: Iterable[tuple[str, str]], domain: Domain) -> re.Pattern[str] | None:
    """A regex finding any surface form of the given (colour, shape) pairs, e.g. "violet crosses"."""
    alternatives = []
    for colour, shape in pairs:
        shapes = [w for word in domain.shape_words[shape] for w in (word, domain.plurals[word])]
        alternatives.append(f"(?:{'|'.join(domain.colour_words[colour])}) (?:{'|'.join(shapes)})")
    if not alternatives:
        return None
    return re.compile(rf"\b(?:{'|'.join(alternatives)})\b")


def _assign(descs: list[Desc], objects: list[SceneObject]) -> bool:
    """Whether the descriptions can be matched one-to-one onto the objects."""
    if not descs:
        return not objects
    first, rest = descs[0], descs[1:]
    for i, o in enumerate(objects):
        if first.matches(o) and _assign(rest, objects[:i] + objects[i + 1 :]):
            return True
    return False
