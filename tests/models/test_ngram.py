"""The token n-gram model mixed with the network: Kneser-Ney as the baseline writes it, a
distribution that sums to one, counts that survive a file, and the mixture's weight."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ngram import CharNgram
from charlm.errors import ConfigError
from charlm.models.ngram import NgramModel, mix, mixture_weight

TEXT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
    "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity. "
) * 3 + "Zebras quietly vex the jumping fox."


def encoded(text: str) -> tuple[dict[str, int], np.ndarray]:
    alphabet = {c: i for i, c in enumerate(sorted(set(TEXT)))}
    return alphabet, np.array([alphabet.get(c, len(alphabet)) for c in text])


@pytest.mark.parametrize("order", [1, 3, 5])
def test_each_probability_is_the_baseline_kneser_ney(order: int) -> None:
    # benchmarks/ngram.py, a dictionary of characters written separately, is the reference.
    alphabet, ids = encoded(TEXT)
    model = NgramModel.fit(ids, len(alphabet) + 1, order)  # + one id no training text has
    reference = CharNgram(order, examples=False).fit([TEXT])
    held_out = "it was the age of zeal, it was quiet!"  # "!" is a character never seen
    _, held_ids = encoded(held_out)
    expected = [
        np.log(reference.prob(held_out[max(0, i - order + 1) : i], held_out[i]))
        for i in range(len(held_out))
    ]
    np.testing.assert_allclose(model.log_probs(held_ids), expected, rtol=0, atol=1e-12)
    # After a context, the first tokens are predicted from it.
    context = "times, "
    _, context_ids = encoded(context)
    whole = context + held_out
    after = [
        np.log(reference.prob(whole[max(0, i - order + 1) : i], whole[i]))
        for i in range(len(context), len(whole))
    ]
    np.testing.assert_allclose(model.log_probs(held_ids, context_ids), after, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 5])
def test_the_next_token_distribution_sums_to_one_and_matches_each_probability(
    order: int,
) -> None:
    alphabet, ids = encoded(TEXT)
    vocab = len(alphabet) + 3  # ids the text never uses still get their share
    model = NgramModel.fit(ids, vocab, order)
    histories = np.array([ids[10 : 10 + order - 1], ids[50 : 50 + order - 1]])
    histories = np.vstack([histories, np.full((1, order - 1), -1)])  # no history at all
    table = model.next_probabilities(histories)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-12)
    assert (table > 0).all()
    for row, history in zip(table, histories, strict=True):
        each = model.probabilities(np.repeat(history[None], vocab, axis=0), np.arange(vocab))
        np.testing.assert_allclose(row, each)


def test_the_counts_survive_tensors_and_damaged_ones_are_refused() -> None:
    alphabet, ids = encoded(TEXT)
    model = NgramModel.fit(ids, len(alphabet), 4)
    again = NgramModel.from_tensors(model.to_tensors(), 4, len(alphabet))
    np.testing.assert_array_equal(again.log_probs(ids[:50]), model.log_probs(ids[:50]))
    tensors = model.to_tensors()
    tensors["events.2"] = tensors["events.2"].flip(0)  # no longer sorted
    with pytest.raises(ConfigError, match="order 3 are inconsistent"):
        NgramModel.from_tensors(tensors, 4, len(alphabet))
    tensors = model.to_tensors()
    del tensors["counts.1"]
    with pytest.raises(ConfigError, match="lack 'counts.1'"):
        NgramModel.from_tensors(tensors, 4, len(alphabet))


def test_orders_and_texts_it_cannot_count_are_refused() -> None:
    with pytest.raises(ConfigError, match="order must be from 1 to 10"):
        NgramModel.fit(np.arange(20), 20, 0)
    with pytest.raises(ConfigError, match="more than 4 tokens"):
        NgramModel.fit(np.arange(4), 20, 5)


def test_the_mixture_weight_is_the_most_likely_one() -> None:
    rng = np.random.default_rng(0)
    network = np.log(rng.uniform(0.05, 0.9, 2000))
    ngram = np.log(rng.uniform(0.05, 0.9, 2000))
    weight = mixture_weight(network, ngram)
    grid = np.linspace(0.001, 0.999, 999)
    best = grid[np.argmax([mix(network, ngram, w).sum() for w in grid])]
    assert abs(weight - best) < 2e-3
    assert mix(network, ngram, weight).sum() >= mix(network, ngram, best).sum() - 1e-9
    # A model that is always far worse gets almost no weight.
    assert mixture_weight(network, network - 5.0) > 0.99


def test_rows_once_computed_are_kept_within_their_bound(monkeypatch) -> None:
    import charlm.models.ngram as ngram_module

    alphabet, ids = encoded(TEXT)
    model = NgramModel.fit(ids, len(alphabet), 3)
    histories = np.array([ids[i : i + 2] for i in range(0, 40, 2)])
    first = model.next_probabilities(histories)
    np.testing.assert_array_equal(model.next_probabilities(histories), first)  # cached
    model.forget_rows()
    np.testing.assert_array_equal(model.next_probabilities(histories), first)
    # Past the bound the cache starts over rather than grow.
    monkeypatch.setattr(ngram_module, "ROW_CACHE_FLOATS", 3 * len(alphabet))
    model.forget_rows()
    for history in histories:
        model.next_probabilities(history)
        assert len(model._rows) <= 3
    np.testing.assert_array_equal(model.next_probabilities(histories), first)
