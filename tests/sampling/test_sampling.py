import pytest
import torch

import charlm
from charlm.checkpoint import save_checkpoint
from charlm.errors import UnknownTokenError
from charlm.sampling import Sampler, sample_next
from tests.conftest import TINY_TEXT
from tests.helpers import ids_of, overfit, tiny_model


@pytest.fixture(scope="module")
def sampler():
    tokenizer, _ = ids_of(TINY_TEXT)
    return Sampler(tiny_model(tokenizer.vocab_size, cell="lstm"), tokenizer)


@pytest.mark.slow
def test_generate_starts_with_the_prefix_and_adds_length_tokens(sampler):
    text = sampler.generate(prefix="the lazy", length=40, seed=1)
    assert text.startswith("the lazy") and len(text) == len("the lazy") + 40


@pytest.mark.slow
def test_stream_yields_only_the_new_text_generate_joins_it(sampler):
    streamed = "".join(sampler.stream(prefix="a stitch", length=50, temperature=0.7, seed=3))
    assert "a stitch" + streamed == sampler.generate(
        prefix="a stitch", length=50, temperature=0.7, seed=3
    )


@pytest.mark.slow
def test_same_seed_same_text_other_seed_other_text(sampler):
    first = sampler.generate(prefix="the", length=60, seed=7)
    assert first == sampler.generate(prefix="the", length=60, seed=7)
    assert first != sampler.generate(prefix="the", length=60, seed=8)


@pytest.mark.slow
def test_temperature_zero_is_greedy(sampler):
    greedy = sampler.generate(prefix="all", length=30, temperature=0, seed=1)
    assert greedy == sampler.generate(prefix="all", length=30, temperature=0, seed=2)
    ids = sampler.tokenizer.encode_array("all").tolist()
    with torch.no_grad():
        for _ in range(30):
            logits, _ = sampler.model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    assert greedy == sampler.tokenizer.decode(ids)


def test_the_prefix_is_primed_in_one_forward_call_then_one_token_per_step(sampler):
    calls = []  # the tokens the network reads in each call, whole sequence or one step
    embedding = sampler.model.embedding
    handle = embedding.register_forward_hook(lambda m, args, out: calls.append(args[0].numel()))
    try:
        sampler.generate(prefix="the quick brown", length=10, seed=0)
    finally:
        handle.remove()
    assert calls == [len("the quick brown")] + [1] * 9  # the last token drawn needs no step


def test_sample_next_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).repeat(20000, 1)
    generator = torch.Generator().manual_seed(0)
    draws = sample_next(logits, 1.0, generator)
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(freq, torch.tensor([0.1, 0.6, 0.3]), atol=0.015)


def test_negative_temperature_and_length_are_value_errors(sampler):
    with pytest.raises(ValueError, match="temperature"):
        sampler.generate(prefix="the", temperature=-0.5)
    with pytest.raises(ValueError, match="length"):
        sampler.generate(prefix="the", length=-1)


def test_unseen_characters_in_the_prefix_are_named(sampler):
    with pytest.raises(UnknownTokenError, match="'Z'"):
        sampler.generate(prefix="Zebra")


@pytest.mark.slow
def test_greedy_sampling_of_a_memorised_text_reproduces_it():
    text = "the quick brown fox jumps over the lazy dog. " * 12
    model, tokenizer, _ = overfit(text, steps=150)
    out = Sampler(model, tokenizer).generate(prefix="the quick", length=80, temperature=0)
    assert out == text[:89]


def test_load_returns_a_sampler_that_scores_text(tmp_path):
    tokenizer, _ = ids_of(TINY_TEXT)
    save_checkpoint(tmp_path / "m", tiny_model(tokenizer.vocab_size), tokenizer)
    sampler = charlm.load(tmp_path / "m", device="cpu")
    assert isinstance(sampler, charlm.Sampler)
    score = sampler.score("the lazy dog jumps")
    assert score.perplexity == pytest.approx(2.718281828**score.cross_entropy)
    assert score.num_tokens == len("the lazy dog jumps")  # every token is predicted
