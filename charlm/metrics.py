"""The numbers models are judged by: perplexity and bits per character for a language model;
accuracy, precision, recall, F1 and the confusion matrix for a classifier."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def perplexity(mean_cross_entropy: float) -> float:
    """exp(mean cross-entropy per token in nats); inf when the loss overflows."""
    try:
        return math.exp(mean_cross_entropy)
    except OverflowError:
        return math.inf


def bits_per_character(total_nats: float, num_characters: int) -> float:
    """Total loss in bits spread over the characters of the text (not the tokens).

    Normalising by characters lets models with different tokenizers be compared.
    """
    return total_nats / math.log(2) / max(1, num_characters)


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], num_labels: int) -> np.ndarray:
    """(labels, labels) counts: row = the true label, column = the predicted one."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def per_label_scores(matrix: np.ndarray) -> list[dict[str, float]]:
    """Precision, recall, F1, support (true examples) and predictions of each label, from a
    confusion matrix.

    A label never predicted has precision 0, one never true has recall 0 (and F1 0 then), as
    scikit-learn reports them with zero_division=0.
    """
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(
        true_positive, predicted, out=np.zeros_like(predicted), where=predicted > 0
    )
    recall = np.divide(true_positive, support, out=np.zeros_like(support), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    return [
        {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
            "predicted": int(n),
        }
        for p, r, f, s, n in zip(precision, recall, f1, support, predicted)
    ]


def macro_f1(matrix: np.ndarray) -> float:
    """The mean F1 over the labels that occur (as true labels) in the evaluation data."""
    scores = [s["f1"] for s in per_label_scores(matrix) if s["support"] > 0]
    return float(np.mean(scores)) if scores else math.nan


def top_k_accuracy(scores: np.ndarray, truth: Sequence[int], k: int) -> float:
    """Share of rows whose true label is among the k highest `scores` of that row."""
    truth = np.asarray(truth, dtype=np.int64)
    if len(truth) == 0:
        return math.nan
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == truth[:, None]).any(axis=1).mean())
