"""A character n-gram language model with interpolated Kneser-Ney smoothing: the baseline of
the labelled-text benchmarks (one model per label is a naive-Bayes classifier).

    p(w | h) = max(c(h w) − d, 0) / c(h)  +  d · N₁₊(h •) / c(h) · p(w | h′)

where h′ drops the oldest character of h; the highest order counts n-grams, the lower ones
count how many different characters precede them (continuation counts), and the lowest is
mixed with a uniform distribution over the characters seen plus one unseen, so that no text
has probability 0. Examples are padded with n − 1 start symbols and end with an end symbol,
which is predicted like a character; a book is one long text without either.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

START, END = "\x02", "\x03"  # never in text: STX and ETX


class CharNgram:
    """An interpolated Kneser-Ney character model of one order (5: four characters of context)."""

    def __init__(self, order: int = 5, discount: float = 0.75, examples: bool = True) -> None:
        self.order, self.discount, self.examples = order, discount, examples
        # counts[k][context] = Counter of next characters, for contexts of k characters
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        self.vocabulary: set[str] = set()

    def fit(self, texts: Iterable[str]) -> CharNgram:
        top = self.order - 1
        for text in texts:
            padded = self._padded(text)
            self.vocabulary.update(padded)
            first = top if self.examples else 0
            for i in range(first, len(padded)):
                context = padded[max(0, i - top) : i]
                self.counts[len(context)][context][padded[i]] += 1
        self._continuations()
        self.vocabulary.discard(START)
        self._totals = [
            {h: (sum(c.values()), len(c)) for h, c in table.items()} for table in self.counts
        ]
        return self

    def _continuations(self) -> None:
        # A lower-order n-gram counts the distinct characters seen before it, except where it
        # starts an example (after the start symbols), which nothing else can precede.
        for k in range(self.order - 1, 0, -1):
            lower: dict[str, Counter] = defaultdict(Counter)
            for context, following in self.counts[k].items():
                for char in following:
                    lower[context[1:]][char] += 1
            for context, following in self.counts[k - 1].items():
                if context.startswith(START):
                    lower[context] = following
            self.counts[k - 1] = lower

    def _padded(self, text: str) -> str:
        return START * (self.order - 1) + text + END if self.examples else text

    def log_prob(self, text: str) -> float:
        """log p(text) in nats: every character, and the end of an example."""
        padded = self._padded(text)
        top = self.order - 1
        first = top if self.examples else 0
        return sum(
            math.log(self.prob(padded[max(0, i - top) : i], padded[i]))
            for i in range(first, len(padded))
        )

    def prob(self, context: str, char: str) -> float:
        """p(char | context), interpolated from the empty context up to the whole one."""
        p = 1.0 / (len(self.vocabulary) + 1)  # every seen character and one unseen
        for k in range(len(context) + 1):
            history = context[len(context) - k :] if k else ""
            total, kinds = self._totals[k].get(history, (0, 0))
            if total == 0:
                continue  # an unseen context says nothing: keep the shorter one's estimate
            seen = self.counts[k][history].get(char, 0)
            p = max(seen - self.discount, 0) / total + self.discount * kinds / total * p
        return p


class NaiveBayes:
    """One n-gram model per label; p(label | text) ∝ p(text | label) · p(label)."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str], order: int = 5) -> None:
        by_label: dict[str, list[str]] = defaultdict(list)
        for text, label in zip(texts, labels, strict=True):
            by_label[label].append(text)
        self.labels = sorted(by_label)
        self.models = [CharNgram(order).fit(by_label[label]) for label in self.labels]
        total = sum(len(by_label[label]) for label in self.labels)
        self.log_prior = [math.log(len(by_label[label]) / total) for label in self.labels]

    def log_likelihoods(self, text: str) -> list[float]:
        """log p(text | label) for every label, in the order of `labels`."""
        return [model.log_prob(text) for model in self.models]

    def predict(self, text: str, prior: str = "learned") -> str:
        """The most probable label, with the training shares as p(label) or equal ones."""
        log_prior = self.log_prior if prior == "learned" else [0.0] * len(self.labels)
        joint = [ll + lp for ll, lp in zip(self.log_likelihoods(text), log_prior)]
        return self.labels[max(range(len(joint)), key=joint.__getitem__)]
