"""hark.trainer.metrics: the one place a confusion matrix becomes accuracy, precision and recall."""

from __future__ import annotations

import numpy as np

from hark.trainer import metrics as M


def test_precision_recall_and_support_from_the_matrix() -> None:
    labels = ["background", "up", "down"]
    truth = [0, 0, 1, 1, 1, 2]
    predicted = [0, 1, 1, 1, 2, 2]
    confusion = M.confusion_matrix(truth, predicted, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    result = M.summary(confusion, labels)
    assert result["accuracy"] == 4 / 6
    assert result["per_class"]["up"] == {"precision": 2 / 3, "recall": 2 / 3, "support": 3}
    assert result["per_class"]["down"] == {"precision": 0.5, "recall": 1.0, "support": 1}


def test_unmeasured_numbers_are_none_not_zero() -> None:
    confusion = M.confusion_matrix([1, 1], [1, 1], 3)
    per = M.per_class(confusion, ["background", "up", "down"])
    assert per["background"] == {"precision": None, "recall": None, "support": 0}
    assert M.accuracy(np.zeros((2, 2), np.int64)) is None
