"""Classes found among the objects found in the pixels: groups of alike outlines and of alike colours.

Boxes found in the pixels (`cmal.data.foreground`) say where a new domain's objects are, not what
they are. Their masks say more: each object's outline (`shape_descriptors`: how much of its box it
fills, whether it has a hole, where its mass sits) and its colour. Objects of one kind have nearly
the same descriptors at any size, so k-means on the standardised descriptors groups them into
classes without a label. The number of classes is the k (2 to ``max_classes``) whose grouping
has the best silhouette: each object much nearer its own group than the next one.

The classes are unnamed (``found-shape-1`` …, ``found-colour-1`` …). They train the detector's
tag and attribute classifiers, and with them the region features the CMAL model reads, to tell
the domain's kinds of object apart; which word names which class is left to fine-tuning on the
texts. A class may still split one kind in two (e.g. by size) or, where descriptors tie, join
two: the classifiers then shape the features a little less, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_CLASSES = 10
"""The most classes `find_classes` considers for one kind of descriptor."""
RESTARTS = 5
"""k-means runs per k (from other seeds), the best kept: one run can settle with two groups joined."""
SILHOUETTE_SAMPLE = 2000
"""Objects the silhouette of a grouping is measured on (all of them when fewer)."""


@dataclass
class FoundClasses:
    """A grouping of descriptors: ``assign`` puts any object (of these images or others) in the
    class of its nearest centre."""

    mean: np.ndarray  # (D,) the standardisation the centres are in
    scale: np.ndarray  # (D,)
    centres: np.ndarray  # (k, D)
    silhouette: float  # of the grouping on the descriptors it was found in

    @property
    def count(self) -> int:
        """The number of classes."""
        return len(self.centres)

    def assign(self, descriptors: np.ndarray) -> np.ndarray:
        """Each row's class, (N,) int64."""
        x = (np.asarray(descriptors, np.float64) - self.mean) / self.scale
        return _nearest(x, self.centres)


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = (x * x).sum(1, keepdims=True) - 2 * x @ centres.T + (centres * centres).sum(1)
    return np.asarray(distances.argmin(1), np.int64)


def kmeans(
    x: np.ndarray, k: int, seed: int = 0, restarts: int = RESTARTS, iterations: int = 100
) -> np.ndarray:
    """k-means on the rows of ``x`` (N, D): the centres (k, D) of the best of ``restarts`` runs
    (least within-class squared distance), each seeded by k-means++."""
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        centres = _lloyd(x, _plus_plus(x, k, rng), iterations)
        cost = float(((x - centres[_nearest(x, centres)]) ** 2).sum())
        if cost < best_cost:
            best, best_cost = centres, cost
    assert best is not None
    return best


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance to the nearest."""
    centres: np.ndarray = x[rng.integers(len(x))][None]
    for _ in range(k - 1):
        nearest = ((x[:, None] - centres[None]) ** 2).sum(-1).min(1)
        pick = rng.choice(len(x), p=nearest / nearest.sum()) if nearest.sum() > 0 else rng.integers(len(x))
        centres = np.vstack([centres, x[pick]])
    return centres


def _lloyd(x: np.ndarray, centres: np.ndarray, iterations: int) -> np.ndarray:
    """Lloyd's iterations from ``centres`` until they stop moving."""
    for _ in range(iterations):
        labels = _nearest(x, centres)
        moved = np.array(
            [x[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(len(centres))]
        )
        if np.allclose(moved, centres):
            break
        centres = moved
    return centres


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a grouping of ``x`` (N, D): for each row, (b − a) / max(a, b), where a is
    its mean distance to its own group and b to the nearest other group (0 for a lone member)."""
    squared = (x * x).sum(1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None] - 2 * x @ x.T, 0))
    groups = np.unique(labels)
    mean_to = np.stack([distances[:, labels == g].mean(1) for g in groups], 1)  # (N, groups)
    own = np.searchsorted(groups, labels)
    sizes = np.array([(labels == g).sum() for g in groups])
    a = mean_to[np.arange(len(x)), own] * sizes[own] / np.maximum(sizes[own] - 1, 1)  # self excluded
    mean_to[np.arange(len(x)), own] = np.inf
    b = mean_to.min(1)
    score = np.where(sizes[own] > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(score.mean())


def find_classes(descriptors: np.ndarray, max_classes: int = MAX_CLASSES, seed: int = 0) -> FoundClasses:
    """Group objects by their descriptors (N, D): k-means for each k from 2 to ``max_classes``,
    keeping the grouping with the best silhouette (see the module docs)."""
    x = np.asarray(descriptors, np.float64)
    if len(x) < 3:
        raise ValueError(f"too few objects to find classes among ({len(x)})")
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    x = (x - mean) / scale
    sample = np.random.default_rng(seed).permutation(len(x))[:SILHOUETTE_SAMPLE]
    best: FoundClasses | None = None
    for k in range(2, min(max_classes, len(x) - 1) + 1):
        centres = kmeans(x, k, seed)
        labels = _nearest(x[sample], centres)
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette(x[sample], labels)
        if best is None or score > best.silhouette:
            best = FoundClasses(mean, scale, centres, score)
    if best is None:  # every object alike: one class
        return FoundClasses(mean, scale, x.mean(0, keepdims=True), 0.0)
    return best
