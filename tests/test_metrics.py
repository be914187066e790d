"""Classification metrics, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from charlm.metrics import confusion_matrix, macro_f1, per_label_scores, top_k_accuracy

TRUTH = [0, 0, 0, 1, 1, 2]
PREDICTED = [0, 0, 1, 1, 0, 0]


def test_the_confusion_matrix_counts_true_rows_against_predicted_columns():
    assert confusion_matrix(TRUTH, PREDICTED, 3).tolist() == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]


def test_precision_recall_and_f1_per_label():
    scores = per_label_scores(confusion_matrix(TRUTH, PREDICTED, 3))
    assert scores[0]["precision"] == pytest.approx(2 / 4)  # 4 predicted 0, 2 right
    assert scores[0]["recall"] == pytest.approx(2 / 3)
    assert scores[0]["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert scores[1] == {
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "predicted": 2
    }  # fmt: skip
    assert scores[2] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}


def test_macro_f1_averages_the_labels_that_occur():
    matrix = confusion_matrix(TRUTH, PREDICTED, 4)  # label 3 never occurs: not averaged
    f1_first = 2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3)
    assert macro_f1(matrix) == pytest.approx((f1_first + 0.5 + 0.0) / 3)
    assert math.isnan(macro_f1(np.zeros((2, 2), dtype=int)))


def test_top_k_accuracy_looks_among_the_k_best():
    scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])
    assert top_k_accuracy(scores, [1, 2, 0], 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, [1, 2, 0], 2) == pytest.approx(1.0)
