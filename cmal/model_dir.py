"""A model directory: the one place that knows its file names and the fields of its JSON files.

Torch-free (the service's ONNX path reads it). A model directory holds

===========================  ============================================================
``detector.safetensors``     detector weights
``detector.json``            detector config (`cmal.detector.config.DetectorConfig`)
``cmal.safetensors``         CMAL weights
``cmal.json``                CMAL config (`cmal.model.config.CMALConfig`)
``tokenizer.json``           the WordPiece tokenizer
``labels.json``              label maps: detector tags (= AMC concepts) and attributes, VQA
                             answers, attribute words, the anchor policy (`Vocabularies`)
``synonyms.json``            surface word -> concept (`Vocabularies.synonyms`)
``metrics.json``             training and evaluation results (optional)
``README.md``                the model card (optional, `cmal.card`)
``export/``                  exported graphs with ``manifest.json`` (`graph_file`)
===========================  ============================================================

Weights are safetensors only: nothing here ever unpickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DETECTOR_WEIGHTS = "detector.safetensors"
DETECTOR_CONFIG = "detector.json"
CMAL_WEIGHTS = "cmal.safetensors"
CMAL_CONFIG = "cmal.json"
TOKENIZER = "tokenizer.json"
LABELS = "labels.json"
SYNONYMS = "synonyms.json"
METRICS = "metrics.json"
CARD = "README.md"
EXPORT_DIR = "export"
MANIFEST = "manifest.json"

WEIGHT_FILES = (DETECTOR_WEIGHTS, CMAL_WEIGHTS)  # what a model's content version hashes
MODEL_FILES = (CMAL_CONFIG, CMAL_WEIGHTS, TOKENIZER, LABELS, SYNONYMS, DETECTOR_CONFIG, DETECTOR_WEIGHTS)


def read_json(path: Path) -> Any:
    """A JSON file's content (UTF-8)."""
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON with a final newline (UTF-8)."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def require(folder: Path, names: tuple[str, ...], what: str = "a CMAL model directory") -> None:
    """Raise `FileNotFoundError` naming the first of ``names`` missing from ``folder``."""
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not {what}: {name} is missing")


def update_labels(folder: Path, **fields: Any) -> None:
    """Set ``fields`` in ``folder/labels.json``, keeping the others (the detector writes its tags
    and attributes first; CMAL training adds answers and the anchor settings later)."""
    path = folder / LABELS
    labels = read_json(path) if path.is_file() else {}
    labels.update(fields)
    write_json(path, labels)


def update_metrics(folder: Path, key: str, value: dict[str, Any]) -> None:
    """Set ``metrics.json[key]`` in a model directory, keeping the other keys."""
    path = folder / METRICS
    metrics = read_json(path) if path.is_file() else {}
    metrics[key] = value
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclass
class Vocabularies:
    """Label maps of a model directory (index = id), with the defaults of older directories."""

    tags: list[str]  # detector tags = AMC concepts
    attributes: list[str]
    answers: list[str]  # VQA answer vocabulary
    synonyms: dict[str, str]  # surface word -> concept
    # surface word -> attribute, for attribute-aware anchors (empty: models trained without them)
    attribute_words: dict[str, str] = field(default_factory=dict)
    # a word matching several regions is left unswapped (False: it swaps with the first; models
    # fine-tuned before this option)
    skip_ambiguous: bool = False
    # a noun whose phrase names an attribute anchors only to regions wearing it (cmal.text.anchors);
    # False: the attribute only chooses among several regions (models fine-tuned before this option)
    strict_attributes: bool = False
    # with strict attribute anchors, a noun whose phrase names a size anchors only to regions of that
    # size: surface word -> size class, and the classes from small to large, each with the largest
    # box side (a share of the image's longer side) it takes (None for the last); fitted on the
    # training boxes (`cmal.text.sizes`); empty: sizes are not used
    size_words: dict[str, str] = field(default_factory=dict)
    size_classes: list[tuple[str, float | None]] = field(default_factory=list)
    # nouns of no concept ("object", "shape", "thing") that anchor to the regions wearing the
    # attribute or size their phrase names (cmal.text.anchors); empty: they never anchor
    generic_nouns: list[str] = field(default_factory=list)
    # a plural or indefinite noun ("how many red circles", "is there a circle") keeps every region it
    # matches, where another word matching several is left unswapped (cmal.text.anchors); False:
    # models before this option
    group_anchors: bool = False
    # grounding declines (no box) when the image-text matching logit of (image, expression) is below
    # this; chosen on validation data by `cmal calibrate` (None: never declines)
    decline_below: float | None = None

    @classmethod
    def load(cls, folder: Path) -> Vocabularies:
        """Read ``labels.json`` and ``synonyms.json`` (absent synonyms: none)."""
        require(folder, (LABELS,))
        labels = read_json(folder / LABELS)
        synonyms = read_json(folder / SYNONYMS) if (folder / SYNONYMS).is_file() else {}
        return cls(
            tags=list(labels["tags"]),
            attributes=list(labels["attributes"]),
            answers=list(labels.get("answers", [])),
            synonyms=dict(synonyms),
            attribute_words=dict(labels.get("attribute_words", {})),
            skip_ambiguous=bool(labels.get("skip_ambiguous_anchors", False)),
            strict_attributes=bool(labels.get("strict_attribute_anchors", False)),
            size_words=dict(labels.get("size_words", {})),
            size_classes=[(str(n), b if b is None else float(b)) for n, b in labels.get("size_classes", [])],
            generic_nouns=list(labels.get("generic_nouns", [])),
            group_anchors=bool(labels.get("group_anchors", False)),
            decline_below=labels.get("grounding_decline_below"),
        )

    def anchor_options(self) -> dict[str, Any]:
        """How the model's words anchor, under the keys of ``labels.json`` (and of a fine-tuning
        run's ``metrics.json``)."""
        return {
            "skip_ambiguous_anchors": self.skip_ambiguous,
            "strict_attribute_anchors": self.strict_attributes,
            "generic_nouns": self.generic_nouns,
            "group_anchors": self.group_anchors,
        }

    def save(self, folder: Path) -> None:
        """Write ``labels.json`` (other keys kept) and ``synonyms.json``."""
        fields: dict[str, Any] = {
            "tags": self.tags,
            "attributes": self.attributes,
            "answers": self.answers,
            **self.anchor_options(),
        }
        if self.attribute_words:
            fields["attribute_words"] = self.attribute_words
        if self.size_classes:
            fields["size_words"] = self.size_words
            fields["size_classes"] = [list(c) for c in self.size_classes]
        # always written: a threshold chosen for other weights must not survive their retraining
        fields["grounding_decline_below"] = self.decline_below
        update_labels(folder, **fields)
        write_json(folder / SYNONYMS, self.synonyms)


def detector_image_size(folder: Path) -> int:
    """The detector's input side in pixels (``detector.json``)."""
    require(folder, (DETECTOR_CONFIG,))
    return int(read_json(folder / DETECTOR_CONFIG)["image_size"])


def graph_file(manifest: dict[str, Any], graph: str, variant: str = "fp32", fmt: str = "onnx") -> str:
    """The file the export manifest records for ``graph`` ("detector" or "fusion") in ``fmt``
    ("onnx" or "torchscript") and ``variant`` ("fp32", "fp16", "int8"). The int8 variant
    quantises only the fusion graph and runs the fp32 detector."""
    found = {
        info["variant"]: name
        for name, info in manifest["files"].items()
        if info["format"] == fmt and info["graph"] == graph
    }
    if graph == "detector" and variant == "int8":
        variant = "fp32"
    if variant not in found:
        raise FileNotFoundError(
            f"the export has no {variant} {fmt} {graph} graph: export it with "
            + ("`cmal export`" if variant == "fp32" else f"`cmal export --{variant}`")
        )
    return str(found[variant])
