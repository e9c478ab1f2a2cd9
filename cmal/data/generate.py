"""Write a Shapes split to disk: PNG images plus the six canonical JSONL files (README, "Data formats").

Every image gets its own random generator seeded from ``(seed, split, index)``, so the output is
byte-identical for the same arguments and any image can be regenerated alone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cmal.data.domain import Domain, get_domain
from cmal.data.language import Speaker
from cmal.data.render import render
from cmal.data.scene import Scene, SceneObject, sample_scene

SPLITS: tuple[str, ...] = ("train", "val", "test", "compositional")
TASK_FILES: tuple[str, ...] = ("captions", "itm", "ve", "rec", "vqa", "objects")

CAPTIONS_PER_IMAGE = 3
ITM_PER_IMAGE = 4  # half positives, half negatives
REC_PER_IMAGE = 2
# the chance that an image also gets an expression naming nothing in it (box null): one rec record
# in five
ABSENT_REC_CHANCE = 0.5
VQA_PER_IMAGE = 4
HARD_NEGATIVE_SHARE = 0.8
STATEMENT_KINDS = ("listing", "relation", "count", "exists", "absent", "attribute")
QUESTION_KINDS = ("colour", "shape", "size", "count", "exists", "relation")


@dataclass
class Summary:
    """Counts of what a generation run wrote."""

    images: int = 0
    objects: int = 0
    records: Counter[str] = field(default_factory=Counter)
    ve_labels: Counter[str] = field(default_factory=Counter)
    itm_labels: Counter[bool] = field(default_factory=Counter)
    vqa_kinds: Counter[str] = field(default_factory=Counter)
    rec_kinds: Counter[str] = field(default_factory=Counter)

    def table(self) -> str:
        """The counts as a plain-text table: images, objects, records per task file (objects.jsonl aside),
        VE labels, ITM matches, VQA question kinds and referring-expression kinds.
        """
        lines = [f"images          {self.images}", f"objects         {self.objects}"]
        for name in TASK_FILES[:-1]:
            lines.append(f"{name + '.jsonl':<16}{self.records[name]}")
        ve = ", ".join(f"{k} {v}" for k, v in sorted(self.ve_labels.items()))
        lines.append(f"ve labels       {ve}")
        lines.append(f"itm match       true {self.itm_labels[True]}, false {self.itm_labels[False]}")
        vqa = ", ".join(f"{k} {v}" for k, v in sorted(self.vqa_kinds.items()))
        lines.append(f"vqa questions   {vqa}")
        rec = ", ".join(f"{k} {v}" for k, v in sorted(self.rec_kinds.items()))
        lines.append(f"rec expressions {rec}")
        return "\n".join(lines)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of one image of one split."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def generate_split(
    out: Path,
    *,
    seed: int,
    num_images: int,
    split: str,
    image_size: int | None = None,
    progress: bool = True,
    domain: str = "shapes",
    extra_relations: int = 0,
    extra_statements: Mapping[str, int] | None = None,
) -> Summary:
    """Generate ``num_images`` scenes of ``split`` into ``out``.

    Args:
        out: output folder; ``images/`` and the JSONL files are written in it (overwritten).
        seed: base seed; the same arguments give byte-identical output.
        num_images: number of scenes.
        split: one of ``SPLITS``; ``compositional`` scenes each hold a held-out colour–shape pair.
        image_size: side of the square PNG images in pixels (default: the domain's, 128 for shapes).
        progress: show a progress bar.
        domain: ``shapes`` (the demo model's world) or ``shifted`` (other shapes, colours,
            background, image size and wording: `cmal.data.domain`).
        extra_relations: per image, up to this many more relation questions (VQA) and as many
            relation statements (ITM, alternately matching and not), drawn after everything else,
            so the rest of the split is the same as without them.
        extra_statements: per image and statement kind (``STATEMENT_KINDS``, e.g. ``{"listing": 2}``),
            up to this many more ITM statements of that kind, alternately matching and not, drawn
            after the extra relations, so the rest of the split is the same as without them.

    Returns:
        Counts of what was written.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    world = get_domain(domain)
    image_size = image_size or world.image_size
    if split == "compositional" and not world.held_out_pairs:
        raise ValueError(f"the {domain} domain has no compositional split (it holds out no pairs)")
    if num_images < 1:
        raise ValueError("num_images must be at least 1")
    if image_size < 64:
        raise ValueError("image_size must be at least 64 pixels")
    if extra_relations < 0:
        raise ValueError("extra_relations must not be negative")
    extra_statements = dict(extra_statements or {})
    for kind, count in extra_statements.items():
        if kind not in STATEMENT_KINDS:
            raise ValueError(f"unknown statement kind {kind!r}; choose from {', '.join(STATEMENT_KINDS)}")
        if count < 0:
            raise ValueError(f"extra statements of kind {kind!r} must not be negative")
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    files = {name: (out / f"{name}.jsonl").open("w", encoding="utf-8") for name in TASK_FILES}
    summary = Summary()
    forbidden = () if split == "compositional" else tuple(sorted(world.held_out_pairs))
    try:
        for index in tqdm(range(num_images), desc=f"shapes {split}", unit="img", disable=not progress):
            rng = image_rng(seed, split, index)
            scene = _referable_scene(rng, image_size, split == "compositional", world)
            image_name = f"images/{index:06d}.png"
            render(scene, rng).save(out / image_name, format="PNG", compress_level=6)
            records = annotate(scene, rng, image_name, forbidden, extra_relations, extra_statements)
            for task, record in records:
                files[task].write(json.dumps(record) + "\n")
                summary.records[task] += 1
                if task == "ve":
                    summary.ve_labels[record["label"]] += 1
                elif task == "itm":
                    summary.itm_labels[record["match"]] += 1
                elif task in ("vqa", "rec"):
                    getattr(summary, f"{task}_kinds")[record["kind"]] += 1
            summary.images += 1
            summary.objects += len(scene.objects)
    finally:
        for f in files.values():
            f.close()
    meta = {
        "generator": "cmal shapes",
        "domain": domain,
        "seed": seed,
        "split": split,
        "num_images": num_images,
        "image_size": image_size,
        "held_out_pairs": sorted([list(p) for p in world.held_out_pairs]),
        **({"extra_relations": extra_relations} if extra_relations else {}),
        **({"extra_statements": extra_statements} if any(extra_statements.values()) else {}),
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return summary


def annotate(
    scene: Scene,
    rng: np.random.Generator,
    image: str,
    forbidden_pairs: tuple[tuple[str, str], ...] = (),
    extra_relations: int = 0,
    extra_statements: Mapping[str, int] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """All annotation records of one scene, as (task file, record) pairs.

    Args:
        scene: the scene.
        rng: the image's random generator.
        image: the image path to write in each record.
        forbidden_pairs: (colour, shape) pairs no text may name (the hold-out, outside its split).
        extra_relations: up to this many more relation questions and relation statements, last.
        extra_statements: up to this many more ITM statements of each kind, after those.
    """
    sp = Speaker(scene, rng, forbidden_pairs)
    records: list[tuple[str, dict[str, Any]]] = []

    records.append(
        (
            "objects",
            {
                "image": image,
                "width": scene.size,
                "height": scene.size,
                "objects": [
                    {"box": list(o.box), "tag": o.shape, "attribute": o.colour, "size": o.size}
                    for o in scene.objects
                ],
            },
        )
    )

    for text in _statements(
        sp,
        ["listing", "relation", _choice(sp, ("count", "exists", "relation"))],
        want=True,
        count=CAPTIONS_PER_IMAGE,
    ):
        records.append(("captions", {"image": image, "caption": text}))

    itm: list[tuple[str, bool, str]] = []
    seen: set[str] = set()
    for want in (True, True, False, False):
        for _ in range(50):
            if not want and not sp.chance(HARD_NEGATIVE_SHARE):
                kind = "foreign"
            else:
                kind = _choice(sp, STATEMENT_KINDS)
            statement = sp.statement(kind, want)
            if statement is not None and statement not in seen:
                seen.add(statement)
                itm.append((statement, want, kind))
                break
        else:
            raise RuntimeError("could not make an ITM pair")
    for k in rng.permutation(len(itm)):
        text, match, kind = itm[int(k)]
        records.append(("itm", {"image": image, "text": text, "match": match, "kind": kind}))

    ve = [
        ("entailment", _statements(sp, [_choice(sp, STATEMENT_KINDS)], want=True, count=1)[0]),
        ("contradiction", _statements(sp, [_choice(sp, STATEMENT_KINDS)], want=False, count=1)[0]),
        ("neutral", sp.neutral()),
    ]
    for k in rng.permutation(len(ve)):
        label, text = ve[int(k)]
        records.append(("ve", {"image": image, "hypothesis": text, "label": label}))

    expressions = []
    for k in rng.permutation(len(scene.objects)):
        obj = scene.objects[int(k)]
        referring = sp.referring_expression(obj)
        if referring is not None:
            expression, kind = referring
            expressions.append(
                ("rec", {"image": image, "expression": expression, "box": list(obj.box), "kind": kind})
            )
        if len(expressions) == REC_PER_IMAGE:
            break
    else:
        raise RuntimeError("scene has too few objects that can be referred to")
    records.extend(expressions)

    asked: set[str] = set()
    kinds = [QUESTION_KINDS[int(k)] for k in rng.permutation(len(QUESTION_KINDS))]
    kinds += ["count", "exists"] * 5  # always possible: fall back on them
    for kind in kinds:
        if len(asked) == VQA_PER_IMAGE:
            break
        qa = sp.question(kind)
        if qa is None or qa[0] in asked:
            continue
        asked.add(qa[0])
        records.append(("vqa", {"image": image, "question": qa[0], "answers": [qa[1]], "kind": kind}))

    # last, so that the records above are the same with or without it
    if sp.chance(ABSENT_REC_CHANCE) and (absent := sp.absent_expression()) is not None:
        records.append(("rec", {"image": image, "expression": absent, "box": None, "kind": "none"}))
    records += _extra_relations(sp, image, extra_relations, asked, seen)
    for kind, count in (extra_statements or {}).items():
        records += _extra_statements(sp, image, kind, count, seen)
    return records


def _extra_statements(
    sp: Speaker, image: str, kind: str, count: int, seen: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Up to ``count`` more ITM statements of ``kind`` (the n-th matching when n is even), none
    repeating a text of the image; fewer when the scene has no new one."""
    return [r for n in range(count) for r in _new_statement(sp, image, kind, n % 2 == 0, seen)]


def _new_statement(
    sp: Speaker, image: str, kind: str, want: bool, seen: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """One ITM record of ``kind`` whose text the image does not have yet (up to 10 draws), or none."""
    for _ in range(10):
        statement = sp.statement(kind, want)
        if statement is not None and statement not in seen:
            seen.add(statement)
            return [("itm", {"image": image, "text": statement, "match": want, "kind": kind})]
    return []


def _extra_relations(
    sp: Speaker, image: str, count: int, asked: set[str], seen: set[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Up to ``count`` more relation questions and as many relation statements (the n-th matching
    when n is even), none repeating a text of the image; fewer when the scene has no new one."""
    records: list[tuple[str, dict[str, Any]]] = []
    for n in range(count):
        for _ in range(10):
            qa = sp.question("relation")
            if qa is not None and qa[0] not in asked:
                asked.add(qa[0])
                records.append(
                    ("vqa", {"image": image, "question": qa[0], "answers": [qa[1]], "kind": "relation"})
                )
                break
        records += _new_statement(sp, image, "relation", n % 2 == 0, seen)
    return records


def _referable_scene(rng: np.random.Generator, image_size: int, compositional: bool, domain: Domain) -> Scene:
    """A scene in which at least ``REC_PER_IMAGE`` objects can be singled out in words.

    Scenes where identical objects sit too close to tell apart are drawn again.
    """
    while True:
        scene = sample_scene(rng, image_size, compositional=compositional, domain=domain)
        probe = Speaker(scene, np.random.default_rng(0))
        if sum(_can_refer(probe, o) for o in scene.objects) >= REC_PER_IMAGE:
            return scene


def _can_refer(sp: Speaker, obj: SceneObject) -> bool:
    return bool(sp.unique_descs(obj) or sp._relational_expression(obj) or sp._superlative_expression(obj))


def _choice(sp: Speaker, options: tuple[str, ...]) -> str:
    return str(sp.pick(options))


def _statements(sp: Speaker, kinds: list[str], *, want: bool, count: int) -> list[str]:
    """``count`` distinct statements of the given truth, trying ``kinds`` first, then any kind."""
    out: list[str] = []
    queue = list(kinds)
    for _ in range(200):
        if len(out) == count:
            return out
        kind = queue.pop(0) if queue else _choice(sp, STATEMENT_KINDS)
        text = sp.statement(kind, want)
        if text is not None and text not in out:
            out.append(text)
    raise RuntimeError(f"could not make {count} statements")
