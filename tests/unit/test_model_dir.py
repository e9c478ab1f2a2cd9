"""The model directory's files: vocabularies with their defaults, labels merged, graphs by manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmal.model_dir import (
    LABELS,
    SYNONYMS,
    Vocabularies,
    graph_file,
    read_json,
    update_labels,
)
from cmal.text.sizes import fit_size_classes, size_class


def test_vocabularies_round_trip_and_older_directories_get_the_defaults(tmp_path: Path) -> None:
    vocab = Vocabularies(
        ["circle"], ["red"], ["yes"], {"disc": "circle"}, {"crimson": "red"}, True, strict_attributes=True,
        size_words={"tiny": "small"}, size_classes=[("small", 0.16), ("large", None)],
        generic_nouns=["thing"], group_anchors=True,
    )  # fmt: skip
    update_labels(tmp_path, note="kept")  # a key written by someone else survives a save
    vocab.save(tmp_path)
    assert Vocabularies.load(tmp_path) == vocab
    assert read_json(tmp_path / LABELS)["note"] == "kept"

    older = tmp_path / "older"
    older.mkdir()
    (older / LABELS).write_text(json.dumps({"tags": ["circle"], "attributes": ["red"]}))
    loaded = Vocabularies.load(older)  # no answers, synonyms, attribute words or anchor policy
    assert (loaded.answers, loaded.synonyms, loaded.attribute_words, loaded.skip_ambiguous) == (
        [],
        {},
        {},
        False,
    )
    assert not loaded.strict_attributes and loaded.size_classes == [] and loaded.size_words == {}
    assert loaded.generic_nouns == [] and not loaded.group_anchors
    assert not (older / SYNONYMS).exists()


def test_size_classes_are_fitted_between_the_annotated_sizes() -> None:
    separated = {"small": [0.10, 0.13], "large": [0.19, 0.25]}
    classes = fit_size_classes(separated, ("small", "large"))
    assert classes == [("small", 0.16), ("large", None)]
    assert [size_class(s, classes) for s in (0.05, 0.16, 0.161, 0.9)] == ["small", "small", "large", "large"]
    overlapping = {"small": [0.1, 0.2, 0.3], "large": [0.25, 0.4, 0.5]}  # between the medians
    assert fit_size_classes(overlapping, ("small", "large")) == [("small", 0.3), ("large", None)]
    assert fit_size_classes({"small": [0.1], "large": []}, ("small", "large")) == []


def test_a_missing_labels_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"labels\.json is missing"):
        Vocabularies.load(tmp_path)


def test_graph_files_come_from_the_manifest() -> None:
    def entry(fmt: str, graph: str, variant: str) -> dict[str, str]:
        return {"format": fmt, "graph": graph, "variant": variant}

    manifest = {
        "files": {
            "d.onnx": entry("onnx", "detector", "fp32"),
            "f.onnx": entry("onnx", "fusion", "fp32"),
            "f8.onnx": entry("onnx", "fusion", "int8"),
            "f.ts": entry("torchscript", "fusion", "fp32"),
        }
    }
    assert graph_file(manifest, "fusion", "int8") == "f8.onnx"
    assert graph_file(manifest, "detector", "int8") == "d.onnx"  # int8 quantises fusion only
    assert graph_file(manifest, "fusion", fmt="torchscript") == "f.ts"
    with pytest.raises(FileNotFoundError, match="cmal export --fp16"):
        graph_file(manifest, "fusion", "fp16")
