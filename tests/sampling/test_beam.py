"""Beam search finds continuations greedy decoding misses, and reports their log-probability."""

import itertools
import math

import pytest

from charlm.sampling import Sampler
from charlm.tokenizers.char import CharTokenizer
from tests.tiny_models import BigramLM

TOKENIZER = CharTokenizer(["\n", "a", "b", "c"])
# Greedy takes "a" (0.6) and is then stuck among near-equal choices; "b" (0.4) leads to a
# near-certain "c" and then a likely newline: "bc\n" has probability 0.4 * 0.9 * 0.7 = 0.252,
# greedy's "a\na" only 0.6 * 0.3 * 0.6 = 0.108.
TABLE = [
    [0.0, 0.6, 0.4, 0.0],  # after "\n"
    [0.3, 0.24, 0.23, 0.23],  # after "a"
    [0.05, 0.03, 0.02, 0.9],  # after "b"
    [0.7, 0.1, 0.1, 0.1],  # after "c"
]


@pytest.fixture
def sampler() -> Sampler:
    return Sampler(BigramLM(TABLE), TOKENIZER)


def probability(text: str, after: str = "\n") -> float:
    chars = "\nabc"
    p, previous = 1.0, after
    for char in text:
        p *= TABLE[chars.index(previous)][chars.index(char)]
        previous = char
    return p


def test_beam_search_beats_greedy_where_greedy_is_not_optimal(sampler):
    (greedy,) = sampler.samples("", 3, temperature=0)
    (beam,) = sampler.samples("", 3, beam_width=2)
    assert greedy.text == "a\na"
    assert beam.text == "bc\n"
    assert beam.log_probability == pytest.approx(math.log(0.252), abs=1e-5)
    assert beam.log_probability > greedy.log_probability
    assert beam.seed is None and len(beam.token_log_probs) == 3


def test_a_wide_enough_beam_finds_the_most_probable_continuation(sampler):
    for length in (1, 2, 4):
        best = max(("".join(p) for p in itertools.product("\nabc", repeat=length)), key=probability)
        (beam,) = sampler.samples("", length, beam_width=max(2, 4 ** (length - 1)))
        assert beam.text == best
        assert beam.log_probability == pytest.approx(math.log(probability(best)), abs=1e-5)


def test_several_beams_come_best_first_and_all_paths_join_the_same_text(sampler):
    beams = sampler.samples("c", 3, beam_width=4, num_samples=4)
    log_probs = [b.log_probability for b in beams]
    assert log_probs == sorted(log_probs, reverse=True) and len({b.text for b in beams}) == 4
    for beam in beams:
        assert beam.log_probability == pytest.approx(math.log(probability(beam.text, "c")))
    assert sampler.generate("c", 3, beam_width=4) == "c" + beams[0].text
    assert "".join(sampler.stream("c", 3, beam_width=4)) == beams[0].text
    pieces = list(sampler.pieces("c", 3, beam_width=4, num_samples=4))  # one a beam, at the end
    assert [(p.text, p.log_prob) for p in pieces] == [(b.text, b.log_probability) for b in beams]
    assert sampler.generate("c", 3, beam_width=4, num_samples=2) == [
        "c" + b.text for b in beams[:2]
    ]


def test_beam_search_of_length_zero_is_empty(sampler):
    (beam,) = sampler.samples("ab", 0, beam_width=3)
    assert beam.text == "" and beam.log_probability == 0.0
