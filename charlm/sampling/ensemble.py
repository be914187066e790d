"""Labelled models classifying together: the mean of their log p(label | text).

Two models that err differently are right together more often than either alone: on the
names a discriminative classifier (`--task classify`) and a labelled language model (Bayes'
rule) gave 84.7% / macro-F1 0.577 together over five seeds, against 83.9% / 0.561 for the
classifier alone (docs/benchmarks.md#classifiers). ULMFiT likewise averages the predictions
of its forward and backward classifiers; here the log-probabilities are averaged (a geometric
mean of the posteriors, normalised again), so that a label one model all but rules out stays
unlikely. Members may list their labels in any order, but must have the same labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from charlm.data import LabelSet
from charlm.errors import ConfigError
from charlm.models.posteriors import joined
from charlm.sampling.classify import Classification, ranked
from charlm.sampling.sampler import Sampler


class Ensemble:
    """Labelled samplers (classifiers or labelled LMs) that classify as one.

    The labels, and the order results list them in, are the first member's. The other
    members are reordered to match.
    """

    is_classifier = True  # it gives labels, not a probability of text

    def __init__(self, members: Sequence[Sampler]) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one labelled model")
        for member in members:
            if member.label_set is None or member.end_id is None:
                raise ConfigError(
                    "every model of an ensemble must be trained on labelled examples "
                    "(--labels ... --examples ...)"
                )
        self.members = list(members)
        self.label_set: LabelSet = members[0].label_set
        names = self.label_set.names
        self._orders = [self._order(member.label_set.names, names) for member in members]

    @staticmethod
    def _order(theirs: Sequence[str], ours: Sequence[str]) -> list[int]:
        """For each of our labels, its column among a member's."""
        if sorted(theirs) != sorted(ours):
            missing = sorted(set(ours) ^ set(theirs))
            raise ConfigError(
                "the models of an ensemble must have the same labels; these are in one and "
                f"not the other: {', '.join(missing[:5])}"
            )
        column = {name: i for i, name in enumerate(theirs)}
        return [column[name] for name in ours]

    def label_log_posterior(
        self,
        texts: Sequence[str],
        *,
        prior: str = "learned",
        unknown: str | None = None,
        batch_size: int = 64,
    ) -> np.ndarray:
        """log p(label | text), (texts, labels): the members' log posteriors under `prior`,
        each from its own training counts, averaged and normalised again."""
        scores = []
        for member, order in zip(self.members, self._orders):
            log_post = member.label_log_posterior(
                texts, prior=prior, unknown=unknown, batch_size=batch_size
            )
            scores.append(log_post[:, order])  # its columns in the first member's order
        return joined(scores)

    def classify(
        self,
        texts: Sequence[str],
        top_k: int | None = 3,
        prior: str = "learned",
        *,
        unknown: str | None = None,
        batch_size: int = 64,
    ) -> list[Classification]:
        """The `top_k` most probable labels of each text (all when None), best first, as
        `Sampler.classify` gives them."""
        log_post = self.label_log_posterior(
            texts, prior=prior, unknown=unknown, batch_size=batch_size
        )
        return ranked(list(texts), log_post, self.label_set.names, top_k)
