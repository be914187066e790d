"""Classifying text with language models, by Bayes' rule.

One model of labelled examples gives p(text | label) for every label; with the prior p(label)
(the training counts, or uniform), p(label | text) = p(text | label) p(label) / Σ over labels.
Texts are scored in batches, each text once per label, in one forward pass per batch: the
rows are (text₁, label₁), (text₁, label₂), ..., (text₂, label₁), ...

Several models of continuous text (one per book) classify a passage alike: p(book | passage)
∝ p(passage | book), compared in bits per character, so models with different tokenizers
are judged fairly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from charlm.data import pad_examples
from charlm.errors import ConfigError
from charlm.tokenizers import Tokenizer

# Logits (rows x positions x vocabulary) per forward pass, as the sampler bounds them.
LOGITS_PER_CALL = 1 << 22
TEXTS_PER_CALL = 64


@dataclass
class LabelScore:
    """One label for a text: p(label | text), and its log."""

    label: str
    probability: float
    log_probability: float
    bits_per_character: float | None = None  # of the text under this label's model, if known

    def to_dict(self) -> dict[str, Any]:
        found = {"label": self.label, "score": self.probability}
        if self.bits_per_character is not None:
            found["bits_per_character"] = self.bits_per_character
        return found


@dataclass
class Classification:
    """A text and its most probable labels, best first."""

    text: str
    labels: list[LabelScore]

    @property
    def label(self) -> str:
        """The most probable label."""
        return self.labels[0].label

    def to_dict(self) -> dict[str, Any]:
        """{"text": ..., "labels": [{"label": ..., "score": probability}, ...]}."""
        return {"text": self.text, "labels": [score.to_dict() for score in self.labels]}


def label_log_likelihoods(
    model: torch.nn.Module,
    encoded: Sequence[np.ndarray],
    num_labels: int,
    end_id: int,
    device: torch.device,
    texts_per_call: int = TEXTS_PER_CALL,
) -> np.ndarray:
    """log p(text | label) in nats, (texts, labels): each text from its start to its end token.
    A model without labels (`num_labels` 0) gives log p(text), (texts, 1).

    The texts are batched by length (little padding), every batch scoring its texts under all
    labels in one forward pass.
    """
    columns = max(1, num_labels)
    scores = np.empty((len(encoded), columns), dtype=np.float64)
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    vocab = model.config.vocab_size
    start = 0
    while start < len(order):
        take = _texts_in_call(encoded, order, start, columns, vocab, texts_per_call)
        chosen = order[start : start + take]
        rows = [encoded[i] for i in chosen for _ in range(columns)]
        labels = np.tile(np.arange(num_labels), len(chosen)) if num_labels else None
        batch = pad_examples(rows, end_id, labels)
        inputs, targets = batch.inputs.to(device), batch.targets.to(device)
        given = {} if labels is None else {"labels": batch.labels.to(device)}
        nll, _ = model(inputs, targets=targets, **given)  # (rows, seq)
        total = (nll.double() * batch.mask.to(device)).sum(dim=1)  # (rows,): texts · labels
        scores[chosen] = -total.view(len(chosen), columns).cpu().numpy()
        start += take
    return scores


def _texts_in_call(encoded, order, start, num_labels, vocab, most) -> int:
    """How many texts from `start` on (shortest first) fit one forward pass's logits."""
    take = min(most, len(order) - start)
    while take > 1:
        longest = len(encoded[order[start + take - 1]]) + 1
        if take * num_labels * longest * vocab <= LOGITS_PER_CALL:
            break
        take //= 2
    return take


def posterior(log_likelihoods: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """log p(label | text) for every row of log p(text | label), by Bayes' rule."""
    joint = log_likelihoods + log_prior  # log p(text | label) + log p(label)
    top = joint.max(axis=1, keepdims=True)
    return joint - (top + np.log(np.exp(joint - top).sum(axis=1, keepdims=True)))


def joined(log_posteriors: Sequence[np.ndarray]) -> np.ndarray:
    """Models' log p(label | text), each (texts, labels) with the labels in one order,
    classifying as one: their mean, normalised again (a geometric mean of the posteriors,
    so that a label one model all but rules out stays unlikely)."""
    mean = np.mean(log_posteriors, axis=0)
    return posterior(mean, np.zeros(mean.shape[1]))


def ranked(
    texts: Sequence[str],
    log_posterior: np.ndarray,
    names: Sequence[str],
    top_k: int | None,
    bits: np.ndarray | None = None,
) -> list[Classification]:
    """Each text with its `top_k` most probable labels (all when None), best first; `bits`
    (texts, labels) adds each label's bits per character."""
    check_top_k(top_k)
    keep = len(names) if top_k is None else min(top_k, len(names))
    results = []
    for row, (text, scores) in enumerate(zip(texts, log_posterior, strict=True)):
        best = np.argsort(-scores, kind="stable")[:keep]
        labels = [
            LabelScore(
                names[i],
                float(np.exp(scores[i])),
                float(scores[i]),
                None if bits is None else float(bits[row, i]),
            )
            for i in best
        ]
        results.append(Classification(text, labels))
    return results


def check_top_k(top_k: int | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1 or None, got {top_k!r}")


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], unknown: str | None) -> list:
    """Each text's ids; an empty text is refused (it has nothing to judge)."""
    if isinstance(texts, str):
        raise ConfigError("give a list of texts (a single string is a list of one: [text])")
    encoded = []
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"cannot classify {text!r}: give non-empty text")
        encoded.append(tokenizer.encode_array(text, unknown))
    return encoded


def by_bits_per_character(
    texts: Sequence[str], bits: np.ndarray, names: Sequence[str], top_k: int | None = None
) -> list[Classification]:
    """Classify passages by the models (columns of `bits`, bits per character) that predict
    them best: p(model | passage) ∝ p(passage | model), with equal priors."""
    characters = np.array([max(1, len(t)) for t in texts], dtype=np.float64)[:, None]
    log_likelihoods = -bits * characters * math.log(2)  # total nats of each passage
    log_post = posterior(log_likelihoods, np.zeros(len(names)))
    return ranked(texts, log_post, names, top_k, bits)
