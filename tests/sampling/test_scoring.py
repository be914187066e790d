"""Scores: cross-entropy, perplexity and bits per character, checked by hand."""

import math

import pytest
import torch

from charlm.errors import ConfigError, UnknownTokenError
from charlm.models import RNNLM, ModelConfig
from charlm.sampling import Sampler, load
from charlm.tokenizers.char import CharTokenizer
from tests.tiny_models import BigramLM, ByteTokenizer, cycle_table

ABC = CharTokenizer(["\n", "a", "b"])
ABC_TABLE = [
    [0.25, 0.5, 0.25],  # after "\n"
    [0.25, 0.25, 0.5],  # after "a"
    [0.25, 0.5, 0.25],  # after "b"
]


def test_score_matches_a_hand_computed_perplexity():
    sampler = Sampler(BigramLM(ABC_TABLE), ABC)
    # P(a|\n) P(b|a) P(b|b) P(a|b) = 1/2 * 1/2 * 1/4 * 1/2 = 2^-5: 5 bits over 4 characters.
    score = sampler.score("abba")
    assert score.num_tokens == 4 and score.num_characters == 4
    assert score.cross_entropy == pytest.approx(5 / 4 * math.log(2))
    assert score.perplexity == pytest.approx(2 ** (5 / 4))
    assert score.bits_per_character == pytest.approx(5 / 4)
    # The first token is predicted after the given prefix instead: P(a|a) = 1/4, 6 bits.
    assert sampler.score("abba", prefix="a").bits_per_character == pytest.approx(6 / 4)


def test_bits_per_character_count_characters_not_tokens():
    order = list("é€".encode())  # five bytes, two characters
    sampler = Sampler(BigramLM(cycle_table(order, 256, certainty=0.5)), ByteTokenizer())
    score = sampler.score("é€", prefix="€")  # every byte predicted with probability 1/2
    assert score.num_tokens == 5 and score.num_characters == 2
    assert score.cross_entropy == pytest.approx(math.log(2))
    assert score.bits_per_character == pytest.approx(5 / 2)


@pytest.mark.slow
def test_long_texts_are_scored_in_chunks_with_the_state_carried():
    text = "the quick brown fox jumps over the lazy dog.\n" * 8
    tokenizer = CharTokenizer.train(text)
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(tokenizer.vocab_size, embed_size=8, hidden_size=16, num_layers=2))
    whole = Sampler(model, tokenizer).score(text)
    for chunk_len in (1, 13):
        chunked = Sampler(model, tokenizer).score(text, chunk_len)
        assert chunked.cross_entropy == pytest.approx(whole.cross_entropy, rel=1e-5)
    # and both equal the loss computed one token at a time, the state carried by hand
    ids = [tokenizer.encode_array("\n")[0], *tokenizer.encode_array(text).tolist()]
    total, state = 0.0, None
    with torch.inference_mode():
        for current, following in zip(ids, ids[1:], strict=False):
            logits, state = model(torch.tensor([[current]]), state)
            total -= logits[0, -1].log_softmax(-1)[following].item()
    assert whole.cross_entropy == pytest.approx(total / len(text), rel=1e-4)


def test_an_empty_text_or_chunk_cannot_be_scored():
    with pytest.raises(ValueError, match="empty"):
        Sampler(BigramLM(ABC_TABLE), ABC).score("")
    with pytest.raises(ValueError, match="chunk_len"):
        Sampler(BigramLM(ABC_TABLE), ABC).score("ab", chunk_len=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.score(None), "text must be a string, got NoneType"),
        (lambda s: s.score(5), "text must be a string, got int"),
        (lambda s: s.score(["ab", "ba"]), "text must be a string, got list"),
        (lambda s: s.score("ab", prefix=None), "prefix must be a string, got NoneType"),
        (lambda s: s.generate(None), "prefix must be a string, got NoneType"),
        (lambda s: s.score("ab", chunk_len=2.5), "chunk_len must be an integer >= 1, got 2.5"),
        (lambda s: s.score("ab", chunk_len="3"), "chunk_len must be an integer >= 1, got '3'"),
    ],
)
def test_a_text_that_is_not_a_string_is_a_config_error_naming_it(call, message):
    with pytest.raises(ConfigError, match=message):
        call(Sampler(BigramLM(ABC_TABLE), ABC))


def test_load_names_what_a_checkpoint_path_must_be():
    with pytest.raises(ConfigError, match="path must name a checkpoint directory, got NoneType"):
        load(None)


def test_the_prefix_of_a_score_follows_the_unknown_policy():
    sampler = Sampler(BigramLM(ABC_TABLE), ABC)
    with pytest.raises(UnknownTokenError, match="the prefix has 1 character the model never"):
        sampler.score("abba", prefix="za")
    assert sampler.score("abba", prefix="za", unknown="skip") == sampler.score("abba", prefix="a")
