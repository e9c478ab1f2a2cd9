"""Torch-free inference over exported ONNX graphs: decode, detect, tokenise, fuse, post-process.

Needs only numpy, Pillow, tokenizers and onnxruntime (the service's ONNX path imports this and
never torch). The same host-side encoding as training (`cmal.text.encode`) feeds the fusion graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tokenizers import Tokenizer

from cmal.imaging import to_input
from cmal.model_dir import (
    EXPORT_DIR,
    MANIFEST,
    TOKENIZER,
    WEIGHT_FILES,
    Vocabularies,
    detector_image_size,
    graph_file,
    read_json,
)
from cmal.tasks import VE_LABELS, declines
from cmal.text.encode import fusion_inputs, region_size_names, region_tag_names, tokenize
from cmal.text.length_groups import CALL_COST_POSITIONS, INFERENCE_GROUPS, length_groups, take_rows

DETECTOR_OUTPUTS = ("boxes", "scores", "tags", "attributes", "features", "valid")
FUSION_INPUTS = (
    "input_ids",
    "attention_mask",
    "region_boxes",
    "region_features",
    "region_valid",
    "anchor_token",
    "anchor_region",
    "anchor_valid",
)
FUSION_OUTPUTS = ("ve_logits", "itm_logits", "vqa_logits", "rec_logits")  # the graph's output order


class GraphMismatch(RuntimeError):
    """Exported graphs that do not belong to the model directory, or were altered."""


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> digest, for this process


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's contents, remembered for the file's current size and modification
    time: a start-up checks the same large files more than once (checks before serving, then
    while loading), and a file that changes gets a new modification time, so is hashed again."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def model_version(model_dir: Path) -> str:
    """A content version: the first 12 hex digits of the hash of the weight files' hashes."""
    joined = "".join(sha256(model_dir / f) for f in WEIGHT_FILES if (model_dir / f).is_file())
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


@dataclass
class Regions:
    """Detector output for a batch of images (numpy), plus the original image sizes."""

    boxes: np.ndarray  # (B, K, 4) normalised
    scores: np.ndarray  # (B, K)
    tags: np.ndarray  # (B, K) int64
    attributes: np.ndarray  # (B, K) int64
    features: np.ndarray  # (B, K, D) float32
    valid: np.ndarray  # (B, K) bool
    sizes: list[tuple[int, int]]  # original (width, height)

    @classmethod
    def from_outputs(cls, out: Sequence[np.ndarray], sizes: list[tuple[int, int]]) -> Regions:
        """From the detector's six outputs in contract order."""
        boxes, scores, tags, attributes, features, valid = (np.asarray(o) for o in out)
        return cls(boxes, scores, tags, attributes, features, valid.astype(bool), sizes)

    def take(self, rows: Sequence[int]) -> Regions:
        """The given rows of the batch, in that order (repeats allowed), as new `Regions`."""
        idx = np.asarray(rows, dtype=np.int64)
        return Regions(
            self.boxes[idx], self.scores[idx], self.tags[idx], self.attributes[idx],
            self.features[idx], self.valid[idx], [self.sizes[i] for i in rows],
        )  # fmt: skip


@dataclass
class ModelFiles:
    """What a model directory holds for inference, besides weights."""

    name: str
    version: str
    image_size: int
    vocab: Vocabularies
    tokenizer: Tokenizer

    @classmethod
    def load(cls, model_dir: Path) -> ModelFiles:
        """Read a model directory's vocabularies, tokenizer and detector input size."""
        return cls(
            name=model_dir.name,
            version=model_version(model_dir),
            image_size=detector_image_size(model_dir),
            vocab=Vocabularies.load(model_dir),
            tokenizer=Tokenizer.from_file(str(model_dir / TOKENIZER)),
        )


def preprocess(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """(B, 3, size, size) float32 detector input."""
    return np.stack([to_input(im.convert("RGB"), size) for im in images])


def encode_batch(files: ModelFiles, texts: Sequence[str], regions: Regions) -> dict[str, np.ndarray]:
    """All fusion-graph inputs for texts paired row by row with ``regions``."""
    encoded = tokenize(files.tokenizer, texts)
    rows = range(len(texts))
    vocab = files.vocab
    tags = [region_tag_names(regions.tags[i], regions.valid[i], vocab.tags) for i in rows]
    attributes = [region_tag_names(regions.attributes[i], regions.valid[i], vocab.attributes) for i in rows]
    sizes = [region_size_names(regions.boxes[i], regions.valid[i], regions.sizes[i], vocab) for i in rows]
    feeds = fusion_inputs(encoded, tags, vocab, attributes, sizes)
    feeds["region_boxes"] = regions.boxes.astype(np.float32)
    feeds["region_features"] = regions.features.astype(np.float32)
    feeds["region_valid"] = regions.valid.astype(bool)
    return feeds


def fuse_by_length(
    feeds: dict[str, np.ndarray], run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], most: int
) -> dict[str, np.ndarray]:
    """``run`` (fusion-graph inputs -> outputs by name) on ``feeds`` as up to ``most`` sub-batches of
    similar text length, each trimmed to its longest text (`cmal.text.length_groups`); the outputs
    come back in the rows' order and equal one call on the whole batch."""
    lengths = feeds["attention_mask"].sum(1).tolist()
    groups = length_groups(lengths, most, CALL_COST_POSITIONS)
    if len(groups) <= 1:
        return run(feeds)
    parts = []
    for rows in groups:
        parts.append(run(take_rows(feeds, rows, max(lengths[i] for i in rows))))
    inverse = np.argsort(np.concatenate(groups))
    return {name: np.concatenate([p[name] for p in parts])[inverse] for name in parts[0]}


def read_manifest(model_dir: Path, graphs_dir: Path, files: Collection[str] | None = None) -> dict[str, Any]:
    """The export manifest, checked against the model directory and the graph files: the weights it
    names, and the graph files among ``files`` (default: every graph file on disk; a backend
    passes the two it loads, so a start does not hash variants it never opens).

    Raises:
        GraphMismatch: the manifest names other weights, or a checked graph file's checksum differs.
        FileNotFoundError: no manifest (the model was never exported).
    """
    path = graphs_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no exported graphs in {graphs_dir}: run `cmal export --model {model_dir}`")
    manifest: dict[str, Any] = read_json(path)
    graphs = {n: i for n, i in manifest["files"].items() if files is None or n in files}
    paths = [model_dir / n for n in manifest["weights"]] + [graphs_dir / n for n in graphs]
    with ThreadPoolExecutor(max_workers=4) as pool:  # hashing releases the GIL: one file per core
        list(pool.map(sha256, [f for f in paths if f.is_file()]))
    for name, digest in manifest["weights"].items():
        if not (model_dir / name).is_file() or sha256(model_dir / name) != digest:
            raise GraphMismatch(
                f"{graphs_dir}: graphs were exported from other weights than {model_dir / name}"
            )
    for name, info in graphs.items():
        file = graphs_dir / name
        if not file.is_file():
            continue  # an optional variant that was not exported
        if sha256(file) != info["sha256"]:
            raise GraphMismatch(f"{file}: checksum differs from manifest.json (corrupted or replaced)")
    return manifest


def verify_backend_graphs(
    model_dir: Path, graphs_dir: Path, fmt: str, variant: str = "fp32"
) -> tuple[str, str]:
    """The detector and fusion files a backend loads (``fmt`` "onnx" or "torchscript"), checked
    with `read_manifest` against the weights and their recorded checksums; the export's other
    files are not hashed (a start opens only these two).

    Raises:
        GraphMismatch: other weights, or a checksum differs.
        FileNotFoundError: no manifest, no such graph in it, or a named file missing on disk.
    """
    manifest = read_manifest(model_dir, graphs_dir, files=())  # the weights
    names = (graph_file(manifest, "detector", variant, fmt), graph_file(manifest, "fusion", variant, fmt))
    for name in names:
        if not (graphs_dir / name).is_file():
            raise FileNotFoundError(f"{graphs_dir / name} is in the manifest but not on disk")
    read_manifest(model_dir, graphs_dir, files=names)
    return names


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of ``x`` along ``axis`` (the max is subtracted first, so large logits do not overflow)."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return np.asarray(e / e.sum(axis=axis, keepdims=True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Elementwise logistic function of ``x``."""
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def entailment_result(logits: np.ndarray) -> dict[str, Any]:
    """(3,) logits -> label and probabilities summing to 1."""
    p = softmax(logits.astype(np.float64))
    return {
        "label": VE_LABELS[int(p.argmax())],
        "scores": {n: float(v) for n, v in zip(VE_LABELS, p, strict=True)},
    }


def grounding_result(
    logits: np.ndarray, regions: Regions, row: int, match_logit: float, decline_below: float | None
) -> dict[str, Any]:
    """(K,) region logits -> the top valid region's box in original pixels and its probability,
    and ``match``, the probability that the expression names something in the image (the
    image-text matching head on the expression). The box is None when no region is valid or the
    model declines (`cmal.tasks.declines`: ``match_logit`` below ``decline_below``); the score is
    then 0."""
    match = float(sigmoid(np.asarray(match_logit, np.float64)))
    valid = regions.valid[row]
    if not valid.any() or declines(match_logit, decline_below):
        return {"box": None, "score": 0.0, "match": match}
    masked = np.where(valid, logits.astype(np.float64), -np.inf)
    p = softmax(masked)
    k = int(p.argmax())
    w, h = regions.sizes[row]
    box = regions.boxes[row, k] * np.array([w, h, w, h])
    return {"box": [round(float(v), 2) for v in box], "score": float(p[k]), "match": match}


def vqa_result(logits: np.ndarray, answers: Sequence[str], k: int = 5) -> dict[str, Any]:
    """(A,) logits -> top answer, its probability (softmax over answers) and the top k."""
    p = softmax(logits.astype(np.float64))
    order = np.argsort(-p, kind="stable")[:k]
    top = [{"answer": answers[int(i)], "score": float(p[i])} for i in order]
    return {"answer": top[0]["answer"], "score": top[0]["score"], "top_k": top}


class OnnxModel:
    """A model directory's exported ONNX graphs behind two calls: `detect` and `fuse`.

    The manifest is checked first (weights and graph checksums), so graphs from another model or
    altered files are refused. Execution providers: CUDA when onnxruntime offers it, else CPU.
    `fuse` runs a batch as up to ``length_groups`` sub-batches of similar text length.

    ``lone_threads`` above ``threads`` adds a second detector session on that many threads, used
    when a `detect` call starts while no other call of this model runs: callers that run side by
    side on one thread each (a service's workers, one per core) leave the other cores idle when
    only one of them has work, and the detector's convolutions run about 1.4 times as fast on two
    threads at batch 1 (`scripts/engine_threads.py`). The fusion graph's small operators gain
    nothing from a second thread, so it keeps one session.
    """

    def __init__(
        self,
        model_dir: Path,
        graphs_dir: Path | None = None,
        variant: str = "fp32",
        providers: Sequence[str] | None = None,
        threads: int = 0,
        length_groups: int = INFERENCE_GROUPS,
        lone_threads: int = 0,
    ):
        import onnxruntime as ort

        self.model_dir = model_dir
        self.graphs_dir = graphs_dir or model_dir / EXPORT_DIR
        # the weights first; the two graphs this variant loads once its policy is checked
        self.manifest = read_manifest(model_dir, self.graphs_dir, files=())
        if not self.manifest.get("passed", False):
            raise GraphMismatch(f"{self.graphs_dir}: the export failed its parity checks (see manifest.json)")
        self.files = ModelFiles.load(model_dir)
        available = ort.get_available_providers()
        wanted = list(providers) if providers else ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.providers = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle runtime threads sleep instead of spinning: detector and fusion are two sessions run in
        # turn, and the threads of the one that just finished spun on the cores the other needed
        # (2 cores, demo model, default threads: batch 32 at 470 samples/s spinning, 680-690 not)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if variant != "fp32" and self.manifest["parity"].get(f"onnx_{variant}", {}).get("passed") is not True:
            raise GraphMismatch(
                f"{self.graphs_dir}: the {variant} graphs have not passed the quantisation policy "
                f"(manifest.json, parity.onnx_{variant}); export them with `cmal export --{variant}`"
            )
        det_name, fus_name = verify_backend_graphs(model_dir, self.graphs_dir, "onnx", variant)
        self.detector_path, self.fusion_path = self.graphs_dir / det_name, self.graphs_dir / fus_name
        self.detector = ort.InferenceSession(str(self.detector_path), options, providers=self.providers)
        self.fusion = ort.InferenceSession(str(self.fusion_path), options, providers=self.providers)
        self.lone_detector = None
        if threads and lone_threads > threads:
            options.intra_op_num_threads = lone_threads
            self.lone_detector = ort.InferenceSession(
                str(self.detector_path), options, providers=self.providers
            )
            # a caller's warm-up runs alone, on the lone session: the other's first call is paid here
            blank = preprocess([Image.new("RGB", (8, 8), (200, 200, 200))], self.files.image_size)
            self.detector.run(list(DETECTOR_OUTPUTS), {"images": blank})
        self.running = 0  # detect and fusion calls in progress, from any thread
        self.running_lock = threading.Lock()
        self.provider = self.fusion.get_providers()[0]
        self.variant = variant
        self.length_groups = length_groups

    def detect(self, images: Sequence[Image.Image]) -> Regions:
        """Regions for a batch of decoded images (any sizes)."""
        batch = preprocess(images, self.files.image_size)
        with self._counted() as alone:
            session = self.lone_detector if alone and self.lone_detector is not None else self.detector
            out = session.run(list(DETECTOR_OUTPUTS), {"images": batch})
        return Regions.from_outputs(out, [im.size for im in images])

    def fuse(self, texts: Sequence[str], regions: Regions) -> dict[str, np.ndarray]:
        """Every head's logits for texts paired row by row with ``regions``."""
        return fuse_by_length(encode_batch(self.files, texts, regions), self._run_fusion, self.length_groups)

    def _run_fusion(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._counted():
            out = self.fusion.run(list(FUSION_OUTPUTS), {n: feeds[n] for n in FUSION_INPUTS})
        return dict(zip(FUSION_OUTPUTS, out, strict=True))

    @contextlib.contextmanager
    def _counted(self) -> Iterator[bool]:
        """Count a graph call while it runs; yields whether it started alone."""
        with self.running_lock:
            self.running += 1
            alone = self.running == 1
        try:
            yield alone
        finally:
            with self.running_lock:
                self.running -= 1
