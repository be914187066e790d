"""The Sampler end to end: streaming, seeds, batches, stop strings, priming, bad settings."""

from collections import Counter

import pytest
import torch

from charlm.models import RNNLM, ModelConfig
from charlm.sampling import Sampler
from charlm.tokenizers.char import CharTokenizer
from tests.tiny_models import BigramLM, ByteTokenizer, cycle_table

# "\n" = 0, "a" = 1, "b" = 2: every probability a power of two, so results can be worked by hand.
ABC = CharTokenizer(["\n", "a", "b"])
ABC_TABLE = [
    [0.25, 0.5, 0.25],  # after "\n"
    [0.25, 0.25, 0.5],  # after "a"
    [0.25, 0.5, 0.25],  # after "b"
]


@pytest.fixture
def bigram() -> Sampler:
    return Sampler(BigramLM(ABC_TABLE), ABC)


@pytest.fixture
def rnn() -> Sampler:
    tokenizer = CharTokenizer.train("the quick brown fox jumps over the lazy dog.\n")
    torch.manual_seed(0)
    config = ModelConfig(tokenizer.vocab_size, embed_size=8, hidden_size=24, num_layers=2)
    return Sampler(RNNLM(config), tokenizer)


@pytest.mark.slow
def test_streamed_text_joins_to_the_generated_text(rnn):
    settings = dict(temperature=0.9, seed=3, top_k=10, top_p=0.95, repetition_penalty=1.2)
    streamed = "".join(rnn.stream("the ", 80, **settings))
    assert "the " + streamed == rnn.generate("the ", 80, **settings)
    assert len(streamed) == 80


@pytest.mark.slow
def test_the_same_seed_gives_the_same_text_and_another_seed_other_text(rnn):
    assert rnn.generate("a", 60, seed=1) == rnn.generate("a", 60, seed=1)
    assert rnn.generate("a", 60, seed=1) != rnn.generate("a", 60, seed=2)


@pytest.mark.slow
def test_temperature_zero_is_deterministic_and_follows_the_argmax(rnn):
    text = rnn.generate("the", 20, temperature=0, seed=1)
    assert text == rnn.generate("the", 20, temperature=0, seed=2)
    ids = rnn.tokenizer.encode_array("the").tolist()
    with torch.inference_mode():
        logits, state = rnn.model(torch.tensor([ids]))
        for char in text[3:]:
            best = int(logits[0, -1].argmax())
            assert rnn.tokenizer.decode([best]) == char
            logits, state = rnn.model(torch.tensor([[best]]), state)


def test_a_batch_returns_a_list_and_sample_i_is_reproduced_alone_with_seed_plus_i(bigram):
    batch = bigram.generate("a", 30, seed=10, num_samples=4)
    assert isinstance(batch, list) and len(batch) == 4 and len(set(batch)) == 4
    for i, text in enumerate(batch):
        assert text == bigram.generate("a", 30, seed=10 + i)


def chi_square(counts: Counter, probs: dict) -> float:
    total = sum(counts.values())
    assert set(counts) <= set(probs)
    return sum((counts[k] - total * p) ** 2 / (total * p) for k, p in probs.items())


def two_token_probs(temperature: float = 1.0) -> dict[str, float]:
    """P(xy | "\\n") for every pair, from the table, with temperature applied per step."""
    table = torch.tensor(ABC_TABLE) ** (1 / temperature)
    table = table / table.sum(dim=1, keepdim=True)
    chars = "\nab"
    return {
        chars[x] + chars[y]: (table[0, x] * table[x, y]).item() for x in range(3) for y in range(3)
    }


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_batch_and_single_samples_follow_the_model_distribution(bigram, temperature):
    # Each sample is two tokens, so this also checks that every row of a batch is fed its own
    # previous token. 9 outcomes, 8 degrees of freedom: chi-square < 26.12 at p = 0.001.
    expected = two_token_probs(temperature)
    batch = bigram.generate("", 2, temperature, seed=0, num_samples=3000)
    assert chi_square(Counter(text for text in batch), expected) < 26.12
    singles = [bigram.generate("", 2, temperature, seed=100_000 + i) for i in range(600)]
    assert chi_square(Counter(singles), expected) < 26.12


def test_the_repetition_penalty_makes_prefix_tokens_rarer(bigram):
    # After "b": P(a) = 0.5. With "a" and "b" in the prefix and a penalty of 2, the unseen
    # newline keeps its weight 0.25 while a and b halve: P(a) = 0.25 / 0.625 = 0.4.
    # (at temperature 1, which leaves these probabilities as they are)
    firsts = Counter(bigram.generate("ab", 1, 1.0, seed=0, num_samples=4000, repetition_penalty=2))
    assert abs(firsts["aba"] / 4000 - 0.4) < 0.03
    assert abs(firsts["ab\n"] / 4000 - 0.4) < 0.03


def test_min_p_draws_only_the_tokens_near_enough_the_most_likely_one(bigram):
    # After "a" the next token is b (0.5) or one of \n, a (0.25 each, half as likely): min-p
    # 0.6 leaves only b; after "b", only a. Whatever the seed, the text alternates.
    for seed in range(10):
        assert bigram.generate("a", 9, 1.0, seed, min_p=0.6) == "ababababab"
    # min-p 0.4 keeps all three: the samples differ
    assert len(set(bigram.generate("a", 9, 1.0, seed=0, min_p=0.4, num_samples=20))) > 1


def test_min_p_sampling_is_reproducible_with_a_seed_alone_or_in_a_batch(rnn):
    # the untrained model is close to uniform: only a high min-p leaves out some tokens
    settings = dict(temperature=1.2, min_p=0.9)
    first = rnn.generate("the ", 60, seed=5, **settings)
    assert first == rnn.generate("the ", 60, seed=5, **settings)
    assert first != rnn.generate("the ", 60, seed=6, **settings)
    without = rnn.generate("the ", 60, seed=5, temperature=1.2)
    assert len(set(first)) < len(set(without))  # min-p left tokens out
    assert rnn.generate("the ", 60, seed=4, num_samples=2, **settings)[1] == first


def test_a_stop_string_ends_the_sample_and_is_not_included():
    cycle = Sampler(BigramLM(cycle_table([1, 2, 0], 3, certainty=1 - 1e-6)), ABC)  # a b \n a ...
    assert cycle.generate("a", 10, temperature=0) == "ab\nab\nab\nab"
    assert cycle.generate("a", 10, temperature=0, stop="\na") == "ab"
    # A stop string spread over two tokens is cut whole, never half-streamed.
    pieces = list(cycle.stream("a", 10, temperature=0, stop=["b\na", "zz"]))
    assert "".join(pieces) == ""
    # A "b" could start the stop string "bb", so it is held back until the next token shows
    # that it does not.
    pieces = list(cycle.stream("a", 10, temperature=0, stop=["bb"]))
    assert pieces == ["b\n", "a", "b\n", "a", "b\n", "a", "b"]


@pytest.mark.slow
def test_samples_in_a_batch_stop_independently(bigram):
    samples = bigram.samples("", 40, seed=5, num_samples=50, stop="bb")
    stopped = [s for s in samples if s.stop == "bb"]
    assert stopped and len(stopped) < 50
    for sample in samples:
        assert "bb" not in sample.text
        if sample.stop is None:
            assert len(sample.token_ids) == 40 and len(sample.text) == 40
        else:  # the drawn tokens spell the text and then the stop string
            assert ABC.decode(sample.token_ids) == sample.text + "bb"


def test_samples_report_token_log_probabilities_of_the_model(bigram):
    (sample,) = bigram.samples("a", 5, temperature=0.5, seed=2)
    chars = "\nab"
    previous, expected = "a", 0.0
    for token in sample.token_ids:
        expected += torch.tensor(ABC_TABLE[chars.index(previous)][token]).log().item()
        previous = chars[token]
    assert sample.log_probability == pytest.approx(expected, abs=1e-5)
    assert len(sample.token_log_probs) == 5 and sample.seed == 2
    assert sample.text == bigram.generate("a", 5, 0.5, seed=2)[1:]


def test_streaming_never_yields_half_a_multibyte_character():
    order = list("é€a".encode())  # c3 a9 | e2 82 ac | 61: six tokens, three characters
    sampler = Sampler(BigramLM(cycle_table(order, 256, certainty=0.999)), ByteTokenizer())
    pieces = list(sampler.stream("a", 12, temperature=0))
    assert pieces == ["é", "€", "a", "é", "€", "a"]
    batch = sampler.generate("a", 12, temperature=0, num_samples=3)
    assert batch == ["aé€aé€a"] * 3


@pytest.mark.slow
def test_a_long_prefix_is_primed_in_chunks_with_the_same_result(rnn, monkeypatch):
    prefix = "the quick brown fox jumps over the lazy dog. " * 4
    whole = rnn.generate(prefix, 30, seed=4)
    monkeypatch.setattr("charlm.sampling.sampler.LOGITS_PER_CALL", 50 * rnn.tokenizer.vocab_size)
    chunked = Sampler(rnn.model, rnn.tokenizer)
    assert chunked.generate(prefix, 30, seed=4) == whole


def test_an_empty_prefix_and_zero_length_work(bigram):
    assert len(bigram.generate("", 25, seed=1)) == 25
    assert bigram.generate("ab", 0) == "ab"
    assert list(bigram.stream("ab", 0)) == []


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"top_p": 1.01},
        {"top_k": 0},
        {"length": -1},
        {"num_samples": 0},
        {"beam_width": 0},
        {"stop": [""]},
        {"seed": -1},
        {"beam_width": 2, "num_samples": 3},
        {"beam_width": 2, "stop": "x"},
        {"beam_width": 2, "top_k": 3},
        {"min_p": 1.5},
        {"beam_width": 2, "min_p": 0.1},
    ],
)
def test_invalid_settings_raise_value_error_before_any_work(bigram, settings):
    with pytest.raises(ValueError):
        bigram.samples("a", **{"length": 5, **settings})


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_batches_and_beams_work_for_every_cell_type(cell):
    tokenizer = CharTokenizer.train("abc de\n")
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(tokenizer.vocab_size, cell=cell, embed_size=4, hidden_size=8))
    sampler = Sampler(model, tokenizer)
    batch = sampler.generate("ab", 20, seed=1, num_samples=3)
    assert [len(text) for text in batch] == [22, 22, 22]
    assert batch[1] == sampler.generate("ab", 20, seed=2)
    beams = sampler.samples("ab", 4, beam_width=3, num_samples=3)
    assert beams[0].log_probability >= beams[1].log_probability >= beams[2].log_probability
    assert len({b.text for b in beams}) == 3 and all(len(b.token_ids) == 4 for b in beams)
