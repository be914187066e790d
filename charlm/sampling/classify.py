"""Classifications as the sampler gives them: each text's labels, best first, with scores.

The posteriors come from charlm/models/posteriors.py (Bayes' rule over a labelled LM's
p(text | label), a classifier's own p(label | text), models joined). Several models of
continuous text (one per book) classify a passage alike: p(book | passage) ∝ p(passage |
book), compared in bits per character, so models with different tokenizers are judged fairly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from charlm.errors import ConfigError, UnknownTokenError
from charlm.models.posteriors import posterior
from charlm.tokenizers import Tokenizer

# Characters of a text an error about it shows; a longer one ends in an ellipsis.
SHOWN_TEXT = 40


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
        try:
            ids = tokenizer.encode_array(text, unknown)
        except UnknownTokenError as exc:  # say which of the texts
            shown = text if len(text) <= SHOWN_TEXT else text[: SHOWN_TEXT - 1] + "…"
            raise exc.naming(f"the text {shown!r}") from None
        if not len(ids):  # a label for no text at all would be the prior alone
            raise ConfigError(
                f"cannot classify {text!r}: every piece of it is unknown and was skipped"
            )
        encoded.append(ids)
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
