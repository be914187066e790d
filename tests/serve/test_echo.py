"""`echo` with `logprobs` on /v1/completions: the prompt's own tokens come first, scored as
`Sampler.score` scores them (what clients such as lm-evaluation-harness send with
`max_tokens: 0` to score a text), whole and streamed."""

from __future__ import annotations

import math

import pytest
from starlette.testclient import TestClient

from charlm.models.ngram import NgramModel
from charlm.sampling import Sampler
from charlm.serve.app import create_app
from tests.serve.conftest import SMALL_LIMITS, model_set
from tests.serve.test_api import stream
from tests.tiny_models import BigramLM, ByteTokenizer, cycle_table


def total(score) -> float:
    """The summed log-probability (nats) behind a `Score`."""
    return -score.cross_entropy * score.num_tokens


def logprobs_of(client, **body) -> dict:
    answer = client.post("/v1/completions", json=body)
    assert answer.status_code == 200, answer.text
    (choice,) = answer.json()["choices"]
    return choice


def test_echo_with_max_tokens_0_scores_the_prompt_as_the_sampler_does(client, sampler):
    prompt = "the lazy dog"
    choice = logprobs_of(client, prompt=prompt, max_tokens=0, echo=True, logprobs=3)
    assert choice["text"] == prompt and choice["finish_reason"] == "length"
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] == list(prompt)
    assert logprobs["text_offset"] == list(range(len(prompt)))
    # The first token is read from the cold state, as a completion primes on its prompt:
    # nothing predicts it.
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    # Each other token after the ones before it: the score of the rest after the first.
    expected = sampler.score(prompt[1:], prefix=prompt[0])
    assert sum(logprobs["token_logprobs"][1:]) == pytest.approx(total(expected), abs=1e-5)
    for token, log_prob, top in zip(
        logprobs["tokens"][1:], logprobs["token_logprobs"][1:], logprobs["top_logprobs"][1:]
    ):
        assert len(top) == 3 and max(top.values()) >= log_prob - 1e-6
        assert list(top.values()) == sorted(top.values(), reverse=True)
        assert token not in top or top[token] == pytest.approx(log_prob)
    # logprobs 0: the log-probabilities alone; no echo: nothing of the prompt.
    bare = logprobs_of(client, prompt=prompt, max_tokens=0, echo=True, logprobs=0)["logprobs"]
    assert bare["token_logprobs"] == pytest.approx(logprobs["token_logprobs"])
    assert bare["top_logprobs"] == [None] * len(prompt)
    plain = logprobs_of(client, prompt=prompt, max_tokens=0, logprobs=3)
    assert plain["text"] == "" and plain["logprobs"]["tokens"] == []


def test_the_prompt_is_scored_as_the_drawn_tokens_after_it_are(client):
    body = {"prompt": "the ", "max_tokens": 12, "seed": 9, "logprobs": 2, "echo": True}
    drawn = logprobs_of(client, **body)
    logprobs = drawn["logprobs"]
    assert "".join(logprobs["tokens"]) == drawn["text"]
    assert logprobs["text_offset"] == list(range(len(drawn["text"])))
    # The drawn text given back as a prompt: the same probabilities, token by token.
    again = logprobs_of(client, prompt=drawn["text"], max_tokens=0, echo=True, logprobs=2)
    scored = again["logprobs"]
    assert scored["tokens"] == logprobs["tokens"]
    assert scored["token_logprobs"][0] is None and logprobs["token_logprobs"][0] is None
    assert scored["token_logprobs"][1:] == pytest.approx(logprobs["token_logprobs"][1:], abs=1e-5)
    for mine, theirs in zip(scored["top_logprobs"][1:], logprobs["top_logprobs"][1:]):
        assert mine.keys() == theirs.keys()
        assert list(mine.values()) == pytest.approx(list(theirs.values()), abs=1e-5)


def test_each_choice_and_prompt_gets_its_own_prompt_scored(client, sampler):
    body = {"prompt": ["the ", "a stitch"], "n": 2, "max_tokens": 5, "seed": 1}
    answer = client.post("/v1/completions", json={**body, "echo": True, "logprobs": 0}).json()
    for choice, prompt in zip(answer["choices"], ["the ", "the ", "a stitch", "a stitch"]):
        logprobs = choice["logprobs"]
        assert choice["text"].startswith(prompt) and len(choice["text"]) == len(prompt) + 5
        assert logprobs["tokens"][: len(prompt)] == list(prompt)
        assert logprobs["text_offset"] == list(range(len(prompt) + 5))
        expected = total(sampler.score(prompt[1:], prefix=prompt[0]))
        assert sum(logprobs["token_logprobs"][1 : len(prompt)]) == pytest.approx(expected, abs=1e-5)


def test_a_streamed_echo_carries_the_prompts_logprobs(client):
    body = {"prompt": "the lazy", "max_tokens": 6, "seed": 4, "echo": True, "logprobs": 2}
    whole = logprobs_of(client, **body)["logprobs"]
    chunks = stream(client, **body)
    first = chunks[0]["choices"][0]
    assert first["text"] == "the lazy"
    assert first["logprobs"]["tokens"] == list("the lazy")
    assert first["logprobs"]["token_logprobs"][0] is None
    assert first["logprobs"]["text_offset"] == list(range(8))
    joined: dict[str, list] = {key: [] for key in whole}
    for chunk in chunks[:-2]:  # the last two: the finish and [DONE]
        for key, values in chunk["choices"][0]["logprobs"].items():
            joined[key] += values
    assert joined["tokens"] == whole["tokens"] and joined["text_offset"] == whole["text_offset"]
    assert joined["token_logprobs"][0] is None
    assert joined["token_logprobs"][1:] == pytest.approx(whole["token_logprobs"][1:])
    # Only the prompt, streamed: one chunk with the prompt and its logprobs, then the finish.
    chunks = stream(client, **{**body, "max_tokens": 0})
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == ["the lazy", ""]
    assert chunks[0]["choices"][0]["logprobs"]["token_logprobs"][1:] == pytest.approx(
        whole["token_logprobs"][1:8]
    )


def test_text_offsets_point_into_the_prompt_as_sent(client):
    # With "skip", the euro sign is not read: the pieces after it sit one character later.
    prompt = "the €lazy"
    body = {"prompt": prompt, "max_tokens": 2, "echo": True, "logprobs": 0, "unknown": "skip"}
    choice = logprobs_of(client, **body)
    logprobs = choice["logprobs"]
    assert choice["text"].startswith(prompt)
    assert logprobs["tokens"][:8] == list("the lazy")
    assert logprobs["text_offset"] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]


def served(sampler: Sampler):
    app = create_app(model_set(SMALL_LIMITS, model=sampler), SMALL_LIMITS)
    return TestClient(app, base_url="http://localhost")


def test_a_model_with_an_ngram_scores_the_prompt_with_the_mixture(sampler):
    ids = sampler.tokenizer.encode_array("the quick brown fox jumps over the lazy dog.\n" * 5)
    sampler.ngram = NgramModel.fit(ids, sampler.tokenizer.vocab_size, 3)
    sampler.ngram_weight = 0.6
    prompt = "the lazy fox"
    with served(sampler) as client:
        choice = logprobs_of(client, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    expected = total(sampler.score(prompt[1:], prefix=prompt[0]))
    assert sum(choice["logprobs"]["token_logprobs"][1:]) == pytest.approx(expected, abs=1e-5)
    alone = Sampler(sampler.model, sampler.tokenizer)  # the network without the n-gram
    assert total(alone.score(prompt[1:], prefix=prompt[0])) != pytest.approx(expected, abs=1e-3)


def test_a_character_of_several_tokens_is_one_piece_with_their_log_probability():
    tokenizer = ByteTokenizer()
    sampler = Sampler(BigramLM(cycle_table(list("abé ".encode()), 256, 0.9)), tokenizer)
    prompt = "abé a"  # é is two bytes, two tokens: the model follows the cycle a b é " "
    with served(sampler) as client:
        logprobs = logprobs_of(client, prompt=prompt, max_tokens=0, echo=True, logprobs=2)[
            "logprobs"
        ]
        first = logprobs_of(client, prompt="éa", max_tokens=0, echo=True, logprobs=0)
    assert logprobs["tokens"] == list(prompt)
    assert logprobs["text_offset"] == list(range(len(prompt)))
    expected = total(sampler.score(prompt[1:], prefix=prompt[0]))
    assert sum(logprobs["token_logprobs"][1:]) == pytest.approx(expected, abs=1e-5)
    # é: p(0xC3 | b) p(0xA9 | 0xC3); its alternatives those where its first byte was read.
    assert logprobs["token_logprobs"][2] == pytest.approx(2 * math.log(0.9), abs=1e-5)
    assert max(logprobs["top_logprobs"][2].values()) == pytest.approx(math.log(0.9), abs=1e-5)
    # A first character of two tokens is not predicted as a whole: null, as one token.
    assert first["logprobs"]["tokens"] == ["é", "a"]
    assert first["logprobs"]["token_logprobs"][0] is None
