"""How well a model of examples does on held-out examples: classification and nats per char.

For a labelled model and labelled examples: accuracy, macro-F1, top-3 accuracy, precision and
recall of each label and the confusion matrix, all from one pass that scores every example
under every label (`Sampler.log_likelihoods`), and the nats per character of the examples
given their true labels. For unlabelled examples, nats per character alone (a labelled model
then sums over the labels: p(text) = Σ p(text | label) p(label)).

Nats per character count each example's end as one character: it is predicted like one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charlm.corpus import ExampleSet
from charlm.errors import CharlmError, ConfigError, CorpusError
from charlm.imagefiles import check_image_path
from charlm.metrics import confusion_matrix, macro_f1, per_label_scores, top_k_accuracy
from charlm.models.posteriors import posterior
from charlm.sampling.ensemble import Ensemble
from charlm.sampling.sampler import Sampler

# Characters of a label the confusion plot shows; a longer one ends in an ellipsis.
LONGEST_TICK_LABEL = 24


@dataclass
class ExampleEvaluation:
    """What `evaluate_examples` measured; the classification fields are None without labels."""

    examples: int
    nats_per_char: float | None  # None for a classifier: it gives no probability of text
    seconds: float  # scoring every example (under every label): the forward passes
    labels: list[str] = field(default_factory=list)  # the model's, in its order
    prior: str | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    top3_accuracy: float | None = None
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion: np.ndarray | None = None  # (labels, labels): row true, column predicted
    # Examples left out with unknown="skip": every piece of them unknown to the model.
    skipped: int = 0

    @property
    def ms_per_example(self) -> float:
        return 1000 * self.seconds / max(1, self.examples)

    def to_dict(self) -> dict[str, Any]:
        found = {
            "examples": self.examples,
            "nats_per_char": self.nats_per_char,
            "ms_per_example": self.ms_per_example,
            "skipped": self.skipped,
        }
        if self.accuracy is not None:
            found |= {
                "accuracy": self.accuracy,
                "macro_f1": self.macro_f1,
                "top3_accuracy": self.top3_accuracy,
                "prior": self.prior,
                "per_label": self.per_label,
                "labels": self.labels,
                "confusion": self.confusion.tolist(),
            }
        return found


def evaluate_examples(
    sampler: Sampler | Ensemble,
    examples: ExampleSet,
    *,
    prior: str = "learned",
    unknown: str | None = None,
    batch_size: int = 64,
) -> ExampleEvaluation:
    """Score `examples` with a model of examples; classify them too when both are labelled.
    An `Ensemble` classifies only, as a classifier does. With unknown="skip", an example
    that is nothing but pieces the model does not know is left out and counted (`skipped`)."""
    examples, skipped = _readable(sampler, examples, unknown)
    evaluation = _evaluate(sampler, examples, prior, unknown, batch_size)
    evaluation.skipped = skipped
    return evaluation


def _readable(
    sampler: Sampler | Ensemble, examples: ExampleSet, unknown: str | None
) -> tuple[ExampleSet, int]:
    """`examples` without those that keep no piece once the unknown ones are skipped."""
    if unknown != "skip":
        return examples, 0
    members = sampler.members if isinstance(sampler, Ensemble) else [sampler]
    kept = [
        index
        for index, text in enumerate(examples.texts)
        if all(len(m.tokenizer.encode_array(text, "skip")) for m in members)
    ]
    if not kept:
        raise CorpusError("no example has a piece the model knows: there is nothing to evaluate")
    return examples.subset(kept), len(examples) - len(kept)


def _evaluate(
    sampler: Sampler | Ensemble,
    examples: ExampleSet,
    prior: str,
    unknown: str | None,
    batch_size: int,
) -> ExampleEvaluation:
    truth = _true_labels(sampler, examples)
    if sampler.is_classifier:
        return _evaluate_classifier(sampler, examples, truth, prior, unknown, batch_size)
    started = time.perf_counter()
    log_likelihoods = sampler.log_likelihoods(
        examples.texts, unknown=unknown, batch_size=batch_size
    )
    seconds = time.perf_counter() - started
    symbols = sum(len(text) + 1 for text in examples.texts)  # each example's end is one
    if truth is None:
        if sampler.label_set is not None:  # p(text) = Σ p(text | label) p(label)
            joint = log_likelihoods + sampler.label_set.log_prior(prior)
            top = joint.max(axis=1, keepdims=True)
            log_likelihoods = top + np.log(np.exp(joint - top).sum(axis=1, keepdims=True))
        nats = -float(log_likelihoods[:, 0].sum()) / symbols
        return ExampleEvaluation(len(examples), nats, seconds)
    given = log_likelihoods[np.arange(len(truth)), truth]
    log_post = posterior(log_likelihoods, sampler.label_set.log_prior(prior))
    nats = -float(given.sum()) / symbols
    return _classification(sampler, truth, log_post, nats, seconds, prior)


def _evaluate_classifier(sampler, examples, truth, prior, unknown, batch_size):
    if truth is None:
        raise CorpusError(
            "a classifier gives no probability of text: evaluate it on labelled examples"
        )
    started = time.perf_counter()
    log_post = sampler.label_log_posterior(
        examples.texts, prior=prior, unknown=unknown, batch_size=batch_size
    )
    seconds = time.perf_counter() - started
    return _classification(sampler, truth, log_post, None, seconds, prior)


def _classification(sampler, truth, log_post, nats, seconds, prior) -> ExampleEvaluation:
    """The classification measures of `log_post`, log p(label | text), against `truth`."""
    names = sampler.label_set.names
    matrix = confusion_matrix(truth, log_post.argmax(axis=1), len(names))
    return ExampleEvaluation(
        examples=len(truth),
        nats_per_char=nats,
        seconds=seconds,
        labels=list(names),
        prior=prior,
        accuracy=float(np.trace(matrix) / max(1, matrix.sum())),
        macro_f1=macro_f1(matrix),
        top3_accuracy=top_k_accuracy(log_post, truth, 3),
        per_label=dict(zip(names, per_label_scores(matrix))),
        confusion=matrix,
    )


def _true_labels(sampler: Sampler | Ensemble, examples: ExampleSet) -> np.ndarray | None:
    """The index of each example's label among the model's, or None when either has none."""
    if examples.labels is None or sampler.label_set is None:
        return None
    names = sampler.label_set.names
    unknown = sorted(set(examples.labels) - set(names))
    if unknown:
        raise CorpusError(
            f"the examples have labels the model was not trained on: {', '.join(unknown[:5])}"
            f" (its labels: {', '.join(names)})"
        )
    position = {name: i for i, name in enumerate(names)}
    return np.array([position[label] for label in examples.labels], dtype=np.int64)


def plot_confusion(evaluation: ExampleEvaluation, out: str | os.PathLike) -> Path:
    """The confusion matrix as an image: each row (a true label) shows where its examples
    went, as shares of the row, so small labels are as visible as large ones."""
    if evaluation.confusion is None:
        raise ConfigError("a confusion matrix needs a labelled model and labelled examples")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise CharlmError(
            "the confusion plot needs matplotlib: pip install 'charlm[plot]'"
        ) from exc
    matrix = evaluation.confusion.astype(np.float64)
    shares = matrix / np.maximum(1, matrix.sum(axis=1, keepdims=True))
    size = max(5.0, 0.42 * len(evaluation.labels) + 2)
    figure = Figure(figsize=(size + 1, size), dpi=110)
    FigureCanvasAgg(figure)  # a canvas of its own: no pyplot, no global figure state
    out = check_image_path(out, "--plot")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(evaluation.labels))
    numbered = plot_key(evaluation.labels) is not None
    names = [
        str(i + 1) if numbered else _tick_label(label) for i, label in enumerate(evaluation.labels)
    ]
    axes.set_xticks(ticks, names, rotation=90, fontsize="small")
    axes.set_yticks(ticks, names, fontsize="small")
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    for row, col in zip(*np.nonzero(matrix)):
        colour = "white" if shares[row, col] > 0.6 else "black"
        axes.text(col, row, int(matrix[row, col]), ha="center", va="center", fontsize=6,
                  color=colour)  # fmt: skip
    axes.set_title(
        f"{evaluation.examples:,} examples: accuracy {evaluation.accuracy:.3f}, "
        f"macro-F1 {evaluation.macro_f1:.3f}",
        fontsize="medium",
    )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true label")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out)
    return out


def plot_key(labels: list[str]) -> str | None:
    """Where the plot's font lacks a character of a label (CJK without a CJK font), its axes
    number the labels from 1, since boxes that all look alike would name nothing: the key to
    those numbers ("1 好, 2 差"), for the words beside the image. None where the font has them
    all."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    drawn = FT2Font(findfont(FontProperties())).get_charmap()
    if all(ord(ch) in drawn for label in labels for ch in _tick_label(label) if ch.isprintable()):
        return None
    return ", ".join(f"{i + 1} {label}" for i, label in enumerate(labels))


def _tick_label(label: str, longest: int = LONGEST_TICK_LABEL) -> str:
    """`label` as the plot names it: a long one cut short, so that the matrix keeps its room."""
    return label if len(label) <= longest else label[: longest - 1] + "…"
