"""log p(label | text) from charlm's two kinds of labelled model, alone and together.

A labelled language model gives p(text | label) for every label (`label_log_likelihoods`), and
Bayes' rule with a prior p(label) turns them into p(label | text) (`posterior`). A classifier
(`--task classify`, `classifier_log_posterior`) gives p(label | text) itself, under the prior
of the labels it was trained on, which Bayes' rule moves to another. Models classify as one by
the mean of their log posteriors (`joined`). The sampler classifies with these
(charlm/sampling/), and training scores a classifier that keeps its labelled LM the same way
(charlm/training/feeds.py), so that the accuracy a run reports is the one `classify` gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from charlm.data import pad_examples

# Logits (rows x positions x vocabulary) per forward pass, as the sampler bounds them.
LOGITS_PER_CALL = 1 << 22
TEXTS_PER_CALL = 64


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


def joined_with_lm(
    scores: np.ndarray, lm_log_likelihoods: np.ndarray, log_prior: np.ndarray,
    held_log_prior: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """A classifier's log p(label | text) (`scores`, under the prior `held_log_prior` its
    training gave them) joined with its labelled LM's, whose log p(text | label) are
    `lm_log_likelihoods`: both under `log_prior`. The one rule for a classifier and the LM
    it keeps, in `Sampler.label_log_posterior` and in a run's test line."""
    own = posterior(scores, log_prior - held_log_prior)
    return joined([own, posterior(lm_log_likelihoods, log_prior)])
