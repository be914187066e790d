"""The server on a model of labelled examples: completions of a label, scores given a label,
classification with probabilities, and the errors of a missing or unknown label."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from charlm.sampling import Sampler
from charlm.serve.app import create_app
from tests.serve.conftest import SMALL_LIMITS, model_set
from tests.tiny_models import untrained_names


@pytest.fixture
def labelled() -> Sampler:
    return untrained_names()


@pytest.fixture
def client(labelled: Sampler):
    app = create_app(model_set(SMALL_LIMITS, names=labelled), SMALL_LIMITS)
    with TestClient(app, base_url="http://localhost") as test_client:
        yield test_client


def test_the_model_card_lists_the_labels(client):
    card = client.get("/v1/models").json()["data"][0]
    assert card["labels"] == ["ab", "xyz"]


def test_a_completion_of_a_label_is_the_example_generate_draws(client, labelled):
    for label, seed in (("ab", 1), ("xyz", 2)):
        body = {"prompt": "", "label": label, "seed": seed, "max_tokens": 30, "logprobs": 5}
        answer = client.post("/v1/completions", json=body).json()
        choice = answer["choices"][0]
        assert choice["text"] == labelled.generate(label=label, seed=seed, length=30)
        assert choice["finish_reason"] in ("stop", "length")
        tops = choice["logprobs"]["top_logprobs"]
        assert all(len(top) == 5 for top in tops)
        # The end of the example is among the alternatives, as the text it writes: none.
        assert any("" in top for top in tops)


def test_a_guided_completion_is_the_example_generate_draws(client, labelled):
    body = {"prompt": "", "label": "xyz", "seed": 3, "max_tokens": 30, "n": 2, "guidance": 2}
    answer = client.post("/v1/completions", json=body).json()
    texts = [choice["text"] for choice in answer["choices"]]
    assert texts == labelled.generate(label="xyz", seed=3, length=30, num_samples=2, guidance=2)


def test_an_echoed_example_has_every_token_scored_after_its_start(client, labelled):
    prompt = "Abba"
    for label in ("ab", "xyz"):
        body = {"prompt": prompt, "label": label, "max_tokens": 0, "echo": True, "logprobs": 20}
        (choice,) = client.post("/v1/completions", json=body).json()["choices"]
        logprobs = choice["logprobs"]
        assert choice["text"] == prompt and logprobs["tokens"] == list(prompt)
        assert logprobs["text_offset"] == [0, 1, 2, 3]
        # Read after the start token, the first token is predicted too: none is null.
        assert None not in logprobs["token_logprobs"] and None not in logprobs["top_logprobs"]
        # Every token (the end one too, "" among the alternatives) is among the 20 likeliest.
        assert all(len(top) == labelled.vocab_size for top in logprobs["top_logprobs"])
        for token, log_prob, top in zip(
            logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]
        ):
            assert top[token] == pytest.approx(log_prob)
        # The score of the example, p(text | label), is that of its tokens and its end.
        score = labelled.score(prompt, label=label)
        after = _after(client, prompt, label)
        expected = -score.cross_entropy * score.num_tokens
        assert sum(logprobs["token_logprobs"]) + after[""] == pytest.approx(expected, abs=1e-5)


def _after(client, prompt: str, label: str) -> dict[str, float]:
    """The log-probability of every token after `prompt` (the end of the example as ""), as
    the alternatives of one more token scored after it."""
    body = {"prompt": prompt + "a", "label": label, "max_tokens": 0, "echo": True, "logprobs": 20}
    (choice,) = client.post("/v1/completions", json=body).json()["choices"]
    return choice["logprobs"]["top_logprobs"][-1]


@pytest.mark.parametrize("label", [None, "fr"])
def test_a_missing_or_unknown_label_is_a_400_that_lists_the_labels(client, label):
    body = {"prompt": "", "max_tokens": 5, **({"label": label} if label else {})}
    answer = client.post("/v1/completions", json=body)
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert "ab" in message and "xyz" in message and "\n" not in message


def test_classify_gives_the_labels_and_probabilities_classify_gives(client, labelled):
    texts = ["Abba", "Xyzzy"]
    answer = client.post("/v1/classify", json={"inputs": texts, "top_k": 2}).json()
    expected = labelled.classify(texts, top_k=2)
    for row, want in zip(answer["data"], expected, strict=True):
        assert row["text"] == want.text
        assert [s["label"] for s in row["labels"]] == [s.label for s in want.labels]
        got = [s["score"] for s in row["labels"]]
        assert got == pytest.approx([s.probability for s in want.labels])
        assert sum(got) == pytest.approx(1.0)  # two labels, both shown


def test_score_takes_the_label_to_score_under(client, labelled):
    answer = client.post("/v1/score", json={"input": "Abba", "label": "ab"})
    expected = labelled.score("Abba", label="ab")
    assert answer.json()["data"][0]["perplexity"] == pytest.approx(expected.perplexity)
    assert client.post("/v1/score", json={"input": "Abba"}).status_code == 400


def test_classify_takes_the_prior_and_unknown_the_python_api_takes(client, labelled):
    texts = ["Abba", "Xyzzy"]
    for prior in ("learned", "uniform"):
        answer = client.post("/v1/classify", json={"inputs": texts, "top_k": 2, "prior": prior})
        expected = labelled.classify(texts, top_k=2, prior=prior)
        for row, want in zip(answer.json()["data"], expected, strict=True):
            assert [s["label"] for s in row["labels"]] == [s.label for s in want.labels]
            got = [s["score"] for s in row["labels"]]
            assert got == pytest.approx([s.probability for s in want.labels])
    unseen = client.post("/v1/classify", json={"inputs": ["Ab-ba"]})
    assert unseen.status_code == 400 and '"unknown": "skip"' in unseen.json()["error"]["message"]
    skipped = client.post("/v1/classify", json={"inputs": ["Ab-ba"], "unknown": "skip"})
    assert skipped.status_code == 200, skipped.text
    assert (
        skipped.json()["data"][0]["labels"]
        == client.post("/v1/classify", json={"inputs": ["Abba"]}).json()["data"][0]["labels"]
    )


@pytest.mark.parametrize(
    "path, field, body",
    [
        ("/v1/classify", "prior", {"input": "Abba", "prior": "flat"}),
        ("/v1/classify", "prior", {"input": "Abba", "prior": 1}),
        ("/v1/classify", "unknown", {"input": "Abba", "unknown": "drop"}),
        ("/v1/score", "unknown", {"input": "Abba", "label": "ab", "unknown": "drop"}),
        ("/v1/score", "label", {"input": "Abba"}),  # a labelled model scores under a label
        ("/v1/score", "label", {"input": "Abba", "label": "fr"}),
        ("/v1/completions", "label", {"prompt": "", "label": "fr"}),
    ],
)
def test_a_bad_field_of_score_or_classify_is_a_400_that_names_it(client, path, field, body):
    answer = client.post(path, json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == field and "\n" not in error["message"]
