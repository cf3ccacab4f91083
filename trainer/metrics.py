"""From a confusion matrix to the numbers people read: accuracy, and precision and recall per class.

One place for what ``hark train`` records in the manifest (validation), ``hark evaluate`` prints
and the benchmarks report, so that "recall" means the same thing in all of them. Rows of the
matrix are the true labels, columns the predicted ones. A class nothing was predicted as has no
precision, one with no clips no recall: ``None``, not 0, so a table shows "-" instead of a number
that was never measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(truth: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray,
                     n_labels: int) -> np.ndarray:
    """``[n_labels, n_labels]`` counts: row = true label index, column = predicted label index."""
    matrix = np.zeros((n_labels, n_labels), np.int64)
    np.add.at(matrix, (np.asarray(truth, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def per_class(confusion: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall and support (true clips) of each label."""
    out = {}
    for i, label in enumerate(labels):
        predicted, actual = int(confusion[:, i].sum()), int(confusion[i].sum())
        out[label] = {
            "precision": float(confusion[i, i] / predicted) if predicted else None,
            "recall": float(confusion[i, i] / actual) if actual else None,
            "support": actual,
        }
    return out


def accuracy(confusion: np.ndarray) -> float | None:
    """Share of the clips on the diagonal; ``None`` without clips."""
    total = int(confusion.sum())
    return float(np.trace(confusion) / total) if total else None


def summary(confusion: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """``accuracy``, ``per_class`` and the ``confusion`` matrix as lists, as the manifest and ``evaluate`` keep them."""
    return {"accuracy": accuracy(confusion), "per_class": per_class(confusion, labels),
            "confusion": confusion.tolist()}
