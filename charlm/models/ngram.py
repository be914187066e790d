"""A token n-gram model with interpolated Kneser-Ney smoothing, to mix with the network.

A recurrent model and an n-gram model of the same text err differently: the network
generalises, the n-gram remembers the book's exact turns of phrase. Mixed token by token,
p(w | h) = λ·p_network(w | h) + (1 − λ)·p_ngram(w | h), as RNN language models have long been
combined with Kneser-Ney models (Mikolov et al. 2011), each book's model predicts its own
held-out text better, and models of different books tell passages apart better
(docs/labelled-text.md#which-book-is-this-passage-from). λ is fitted on validation text
(`mixture_weight`).

The counts are sorted integer arrays, saved as safetensors beside the weights (nothing is
pickled). A context of k tokens (t₋ₖ … t₋₁) is numbered among the contexts of its length;
its key is (number of its k−1 most recent tokens) · V + t₋ₖ, so each level is found from the
one below by one `searchsorted`, for every position at once. An event (context, next token)
has the key (number of the context) · V + token. The highest order counts events; each lower
order counts, for each event, how many distinct tokens precede it (Kneser-Ney's continuation
counts), as in Chen & Goodman (1999); the absolute discount is 0.75.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from charlm.errors import ConfigError

DISCOUNT = 0.75
# Orders above this gain nothing on characters and cost memory; it bounds what a config may ask.
MAX_NGRAM_ORDER = 10
# The most probabilities `next_probabilities` keeps for histories it has seen (32 MB).
ROW_CACHE_FLOATS = 1 << 22


@dataclass(frozen=True, eq=False)  # counts are arrays: compared by identity
class NgramModel:
    """Counts of a token n-gram model over `vocab_size` ids, of `order` (context order − 1).

    `contexts[k]`: the sorted keys of the contexts of k tokens (contexts[0] is the empty one);
    `events[k]`, `counts[k]`: the sorted keys of (context of k tokens, next token) and their
    counts.
    """

    order: int
    vocab_size: int
    contexts: tuple[np.ndarray, ...]
    events: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]
    discount: float = DISCOUNT

    @classmethod
    def fit(cls, ids: np.ndarray, vocab_size: int, order: int = 5) -> NgramModel:
        """Count the n-grams of `ids` (one continuous text) up to `order` tokens."""
        if not 1 <= order <= MAX_NGRAM_ORDER:
            raise ConfigError(
                f"an n-gram model's order must be from 1 to {MAX_NGRAM_ORDER}, got {order}"
            )
        ids = np.asarray(ids, dtype=np.int64)
        top = order - 1
        if len(ids) <= top:
            raise ConfigError(
                f"a {order}-gram model needs more than {top} tokens of training text, "
                f"got {len(ids)}"
            )
        positions = np.arange(top, len(ids))
        number = np.zeros(len(positions), dtype=np.int64)  # every position's empty context
        contexts = [np.zeros(1, dtype=np.int64)]
        for k in range(1, order):
            keys, number = np.unique(number * vocab_size + ids[positions - k], return_inverse=True)
            contexts.append(keys)
        events, counts = [None] * order, [None] * order
        top_events = number * vocab_size + ids[positions]
        events[top], counts[top] = np.unique(top_events, return_counts=True)
        for k in range(top - 1, -1, -1):  # continuation counts, from the order above
            above = events[k + 1]
            shorter = contexts[k + 1][above // vocab_size] // vocab_size
            events[k], counts[k] = np.unique(
                shorter * vocab_size + above % vocab_size, return_counts=True
            )
        return cls(order, vocab_size, tuple(contexts), tuple(events), tuple(counts))

    def __post_init__(self) -> None:
        # Per context: its events' total count and how many distinct tokens follow it.
        totals, kinds = [], []
        for k in range(self.order):
            context = self.events[k] // self.vocab_size
            size = len(self.contexts[k])
            totals.append(np.bincount(context, weights=self.counts[k], minlength=size))
            kinds.append(np.bincount(context, minlength=size).astype(np.float64))
        object.__setattr__(self, "_totals", totals)
        object.__setattr__(self, "_kinds", kinds)
        object.__setattr__(self, "_rows", {})  # next_probabilities' rows, by history

    def log_probs(self, ids: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """log p(ids[i] | the tokens before it) in nats for each token, the first ones read
        after `context` (earlier tokens, e.g. the prompt)."""
        ids = np.asarray(ids, dtype=np.int64)
        return np.log(self.probabilities(self.histories(ids, context), ids))

    def histories(self, ids: Sequence[int], context: Sequence[int] | None = None) -> np.ndarray:
        """Each token's history (len(ids), order − 1), most recent last, the first ones read
        after `context`; -1 where the text had not begun."""
        ids = np.asarray(ids, dtype=np.int64)
        before = np.asarray(context if context is not None else [], dtype=np.int64)
        text = np.concatenate([before[len(before) - self.order + 1 :], ids])
        start = len(text) - len(ids)
        padded = np.concatenate([np.full(self.order - 1, -1, dtype=np.int64), text])
        rows = np.arange(len(ids))[:, None] + start + np.arange(self.order - 1)[None, :]
        return padded[rows]

    def next_probabilities(self, histories: np.ndarray) -> np.ndarray:
        """p(every token | history) for each row of `histories` (rows, order − 1; -1 where
        a history is shorter): (rows, vocab_size), each row summing to 1.

        Drawing text asks for the same few thousand histories again and again, so each row
        is kept once computed (up to ROW_CACHE_FLOATS numbers, then the cache starts over).
        """
        histories = np.asarray(histories, dtype=np.int64)
        histories = histories if histories.ndim == 2 else histories[None]
        keys = [history.tobytes() for history in histories]
        missing = [row for row, key in enumerate(keys) if key not in self._rows]
        if missing:
            if (len(self._rows) + len(missing)) * self.vocab_size > ROW_CACHE_FLOATS:
                self._rows.clear()  # and every row of this call is computed afresh
                missing = list(range(len(keys)))
            for row, probabilities in zip(missing, self._table(histories[missing]), strict=True):
                self._rows[keys[row]] = probabilities
        return np.stack([self._rows[key] for key in keys])

    def forget_rows(self) -> None:
        """Empty the cache of `next_probabilities` (as a model just loaded has it)."""
        self._rows.clear()

    def _table(self, histories: np.ndarray) -> np.ndarray:
        rows = len(histories)
        table = np.full((rows, self.vocab_size), 1.0 / self.vocab_size)
        for k, number, seen in self._contexts(histories):
            # A context's events are contiguous among the sorted keys: gather each row's.
            first = np.searchsorted(self.events[k], number * self.vocab_size)
            last = np.searchsorted(self.events[k], (number + 1) * self.vocab_size)
            lengths = np.where(seen, last - first, 0)
            owner = np.repeat(np.arange(rows), lengths)
            at = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            at += np.repeat(first, lengths)
            counts = np.zeros_like(table)
            counts[owner, self.events[k][at] % self.vocab_size] = self.counts[k][at]
            kinds = self._kinds[k][number][:, None]
            level = np.maximum(counts - self.discount, 0) + self.discount * kinds * table
            level /= self._totals[k][number][:, None]
            table = np.where(seen[:, None], level, table)
        return table

    def probabilities(self, histories: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """p(tokens[i] | histories[i]), interpolated from the empty context up to the
        longest one seen in training (histories: (n, order − 1), most recent last, -1 for
        none)."""
        p = np.full(len(tokens), 1.0 / self.vocab_size)
        for k, number, seen in self._contexts(histories):
            at, found = _lookup(self.events[k], number * self.vocab_size + tokens)
            count = np.where(found, self.counts[k][at], 0)
            total = self._totals[k][number]
            kinds = self._kinds[k][number]
            level = (np.maximum(count - self.discount, 0) + self.discount * kinds * p) / total
            p = np.where(seen, level, p)
        return p

    def _contexts(self, histories: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """For each context length k from 0 up: each row's context number among those of k
        tokens, and whether training saw it; until no row's context has been seen."""
        number = np.zeros(len(histories), dtype=np.int64)
        seen = np.ones(len(histories), dtype=bool)
        for k in range(self.order):
            if k:
                token = histories[:, self.order - 1 - k]
                number, found = _lookup(self.contexts[k], number * self.vocab_size + token)
                seen = seen & found & (token >= 0)
                if not seen.any():
                    return  # no longer context has been seen either
            yield k, number, seen

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The counts as named tensors, for a safetensors file."""
        tensors = {}
        for k in range(self.order):
            tensors[f"contexts.{k}"] = torch.from_numpy(self.contexts[k])
            tensors[f"events.{k}"] = torch.from_numpy(self.events[k])
            tensors[f"counts.{k}"] = torch.from_numpy(self.counts[k])
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], order: int, vocab_size: int):
        """The model `to_tensors` saved; ConfigError when the tensors do not make one."""
        try:
            parts = {
                name: tuple(tensors[f"{name}.{k}"].numpy().astype(np.int64) for k in range(order))
                for name in ("contexts", "events", "counts")
            }
        except KeyError as exc:
            raise ConfigError(f"the n-gram counts lack {exc}") from exc
        for k in range(order):
            contexts, events, counts = (parts[name][k] for name in ("contexts", "events", "counts"))
            valid = (
                len(contexts) > 0
                and _increasing(contexts)
                and len(events) == len(counts) > 0
                and _increasing(events)
                and events[0] >= 0
                and events[-1] // vocab_size < len(contexts)
                and counts.min() > 0
            )
            if not valid:
                raise ConfigError(f"the n-gram counts of order {k + 1} are inconsistent")
        return cls(order, vocab_size, parts["contexts"], parts["events"], parts["counts"])


def _increasing(keys: np.ndarray) -> bool:
    return bool(np.all(keys[1:] > keys[:-1]))


def _lookup(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `wanted` is in the sorted `keys` (0 where it is not), and whether it is."""
    at = np.searchsorted(keys, wanted)
    at = np.minimum(at, len(keys) - 1)
    return at, keys[at] == wanted


def mixture_weight(network: np.ndarray, ngram: np.ndarray, steps: int = 200) -> float:
    """The weight λ of the network in λ·p_network + (1 − λ)·p_ngram that maximises the
    likelihood of a text, given each model's log-probabilities of its tokens: EM, which
    raises the likelihood at every step (each step: λ ← the mean share of the network in the
    mixture's probability of a token)."""
    weight = 0.5
    for _ in range(steps):
        mixed = mix(network, ngram, weight)
        new = float(np.mean(np.exp(np.log(weight) + network - mixed)))
        new = min(max(new, 1e-6), 1 - 1e-6)
        if abs(new - weight) < 1e-7:
            return new
        weight = new
    return weight


def mix(network: np.ndarray, ngram: np.ndarray, weight: float) -> np.ndarray:
    """log(λ·p_network + (1 − λ)·p_ngram) per token, from the two models' log-probabilities."""
    return np.logaddexp(np.log(weight) + network, np.log1p(-weight) + ngram)
