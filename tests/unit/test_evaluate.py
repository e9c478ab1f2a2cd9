"""Evaluation metrics: ROC AUC against a brute-force count, and the LR schedule's shape."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cmal.evaluate import roc_auc
from cmal.train.trainer import TrainSettings, lr_at


def brute_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half, over every pair."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_roc_auc_counts_pairs_with_ties_as_half() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, size=30).astype(float)  # many ties
        labels = rng.integers(0, 2, size=30).astype(float)
        if 0 < labels.sum() < len(labels):
            assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)
    assert roc_auc(np.array([0.1, 0.9]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([0.9, 0.1]), np.array([0.0, 1.0])) == 0.0
    assert np.isnan(roc_auc(np.array([0.3, 0.4]), np.array([1.0, 1.0])))  # one class only


def test_learning_rate_warms_up_linearly_then_decays_to_zero() -> None:
    s = TrainSettings(lr=1.0, warmup=0.1)
    total = 100
    rates = [lr_at(step, total, s) for step in range(total + 1)]
    assert rates[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # 10 warm-up steps
    assert rates[10] == pytest.approx(1.0)  # the peak, then cosine
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    assert rates[55] == pytest.approx(0.5)  # half way through the decay
    assert rates[total] == pytest.approx(0.0, abs=1e-12)
    assert lr_at(500, total, s) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at zero
