"""The HTTP API through an in-process client: completions (whole and streamed), models,
health, score, classify, and bad requests answered with one line while the server goes on."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.sampling import Sampler, load
from charlm.sampling.batch import Batch
from charlm.tokenizers.char import CharTokenizer
from tests.serve.conftest import SMALL_LIMITS
from tests.tiny_models import BigramLM, cycle_table


def events(response) -> list:
    """The data of each server-sent event; "[DONE]" stays a string."""
    data = [line[len("data: ") :] for line in response.iter_lines() if line]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


def stream(client, **body) -> list:
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return events(response)


def streamed_texts(chunks: list) -> dict[int, str]:
    texts: dict[int, str] = {}
    for chunk in chunks[:-1]:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    return texts


def test_a_completion_is_what_charlm_generate_prints_after_the_prefix(client, checkpoint):
    body = {"prompt": "the ", "max_tokens": 60, "seed": 11, "temperature": 0.9, "top_k": 12}
    answer = client.post("/v1/completions", json=body).json()
    args = ["--prefix", "the ", "--length", "60", "--seed", "11", "--temperature", "0.9"]
    printed = CliRunner().invoke(cli, ["generate", str(checkpoint), *args, "--top-k", "12"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == "the " + answer["choices"][0]["text"] + "\n"
    # With only a prompt and a seed, the defaults are those of `charlm generate` too.
    short = client.post("/v1/completions", json={"prompt": "a", "seed": 3}).json()
    default = CliRunner().invoke(cli, ["generate", str(checkpoint), "--prefix", "a", "--seed", "3"])
    assert default.output == "a" + short["choices"][0]["text"] + "\n"


def test_every_sampling_option_passes_through_by_its_charlm_name(client, sampler):
    # min_p = 1 keeps only the most likely token: the greedy text, whatever the seed.
    body = {"prompt": "the ", "max_tokens": 30, "seed": 1, "min_p": 1.0, "top_k": 5}
    (choice,) = client.post("/v1/completions", json=body).json()["choices"]
    assert "the " + choice["text"] == sampler.generate("the ", 30, temperature=0)
    body = {"prompt": "the ", "max_tokens": 30, "repetition_penalty": 1.5, "seed": 2}
    (choice,) = client.post("/v1/completions", json=body).json()["choices"]
    assert "the " + choice["text"] == sampler.generate("the ", 30, seed=2, repetition_penalty=1.5)


def test_unknown_skip_drops_the_characters_the_model_never_saw(client, sampler):
    body = {"prompt": "the €", "max_tokens": 20, "seed": 3, "unknown": "skip"}
    (choice,) = client.post("/v1/completions", json=body).json()["choices"]
    assert "the " + choice["text"] == sampler.generate("the ", 20, seed=3)


def test_the_completion_object_follows_openai(client):
    answer = client.post("/v1/completions", json={"prompt": "the ", "max_tokens": 7}).json()
    assert answer["object"] == "text_completion" and answer["model"] == "tiny"
    assert answer["id"].startswith("cmpl-") and isinstance(answer["created"], int)
    (choice,) = answer["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert len(choice["text"]) == 7 and choice["logprobs"] is None
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11}


def test_streamed_chunks_join_to_the_whole_completion(client, monkeypatch):
    # A token every 2 ms: the tiny model alone can draw all 80 before the event loop hands
    # the client its second chunk, and then the stream would be one lump however it is made.
    step = Batch.step

    def slower_step(self):
        time.sleep(0.002)
        return step(self)

    monkeypatch.setattr(Batch, "step", slower_step)
    body = {"prompt": "the ", "max_tokens": 80, "seed": 5, "n": 2, "stop": "z"}
    whole = client.post("/v1/completions", json=body).json()
    chunks = stream(client, **body, stream_options={"include_usage": True})
    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"] == whole["usage"]
    texts = streamed_texts(chunks[:-1])
    assert texts == {c["index"]: c["text"] for c in whole["choices"]}
    finished = {c["index"]: c["finish_reason"] for chunk in chunks[:-2] for c in chunk["choices"]}
    assert finished == {c["index"]: c["finish_reason"] for c in whole["choices"]}
    assert all(chunk["object"] == "text_completion" for chunk in chunks[:-1])
    # Piece by piece, not one lump at the end (how many pieces share a chunk depends on how
    # fast the model draws against how fast the client reads).
    assert len(chunks[:-2]) >= 4


def test_n_samples_use_seed_plus_i_and_a_prompt_list_numbers_the_choices(client, sampler):
    body = {"prompt": ["the ", "a "], "max_tokens": 30, "seed": 20, "n": 2}
    answer = client.post("/v1/completions", json=body).json()
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
    assert [c["seed"] for c in answer["choices"]] == [20, 21, 20, 21]
    for choice, prompt in zip(answer["choices"], ["the ", "the ", "a ", "a "]):
        alone = sampler.generate(prompt, 30, temperature=0.8, seed=choice["seed"])
        assert prompt + choice["text"] == alone


def test_a_stop_string_ends_the_text_before_it(client):
    text = client.post("/v1/completions", json={"prompt": "the ", "seed": 1}).json()
    stop = text["choices"][0]["text"][20:22]
    cut = client.post("/v1/completions", json={"prompt": "the ", "seed": 1, "stop": [stop]})
    (choice,) = cut.json()["choices"]
    assert choice["finish_reason"] == "stop"
    assert text["choices"][0]["text"].startswith(choice["text"] + stop)
    assert stop not in choice["text"]


def test_echo_puts_the_prompt_before_the_completion(client):
    body = {"prompt": "the ", "max_tokens": 10, "seed": 2}
    plain = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    echoed = client.post("/v1/completions", json={**body, "echo": True}).json()
    assert echoed["choices"][0]["text"] == "the " + plain
    assert streamed_texts(stream(client, **body, echo=True)) == {0: "the " + plain}
    # With logprobs, the prompt's own tokens come first (tests/serve/test_echo.py).
    offsets = client.post("/v1/completions", json={**body, "echo": True, "logprobs": 0}).json()
    assert offsets["choices"][0]["logprobs"]["text_offset"] == list(range(14))


def test_logprobs_give_each_piece_its_probability_and_the_likeliest_alternatives(client, sampler):
    body = {"prompt": "the ", "max_tokens": 25, "seed": 4, "logprobs": 3}
    (choice,) = client.post("/v1/completions", json=body).json()["choices"]
    logprobs = choice["logprobs"]
    (sample,) = sampler.samples("the ", 25, temperature=0.8, seed=4)
    assert "".join(logprobs["tokens"]) == choice["text"] == sample.text
    assert logprobs["token_logprobs"] == pytest.approx(sample.token_log_probs, abs=1e-5)
    assert logprobs["text_offset"] == list(range(25))
    for token, log_prob, top in zip(
        logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]
    ):
        assert len(top) == 3 and max(top.values()) >= log_prob - 1e-6
        assert token not in top or top[token] == pytest.approx(log_prob)
    chunks = stream(client, **body)
    streamed = [lp for c in chunks[:-2] for lp in c["choices"][0]["logprobs"]["token_logprobs"]]
    assert streamed == pytest.approx(logprobs["token_logprobs"])


def test_models_and_health(client):
    (card,) = client.get("/v1/models").json()["data"]
    assert card["id"] == "tiny" and card["object"] == "model" and card["owned_by"] == "charlm"
    assert card["tokenizer"] == "char" and card["parameters"] > 0 and card["labels"] == []
    assert client.get("/v1/models/tiny").json() == card
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["models"][0]["id"] == "tiny"
    assert health["limits"]["max_tokens"] == SMALL_LIMITS.max_tokens


def test_score_gives_what_the_sampler_gives(client, sampler):
    answer = client.post("/v1/score", json={"input": ["the lazy dog", "a stitch"]}).json()
    assert [row["index"] for row in answer["data"]] == [0, 1]
    expected = sampler.score("the lazy dog")
    first = answer["data"][0]
    assert first["perplexity"] == pytest.approx(expected.perplexity)
    assert first["bits_per_character"] == pytest.approx(expected.bits_per_character)
    assert first["tokens"] == first["characters"] == len("the lazy dog")


def test_classify_says_a_model_without_labels_has_none(client):
    answer = client.post("/v1/classify", json={"inputs": ["the lazy dog"], "top_k": 3})
    assert answer.status_code == 400
    assert "has no labels" in answer.json()["error"]["message"]


BAD_BODIES = {
    "not an object": [1, 2],
    "unknown field": {"prompt": "a", "frequency": 1},
    "negative temperature": {"prompt": "a", "temperature": -1},
    "top_p above 1": {"prompt": "a", "top_p": 1.5},
    "min_p above 1": {"prompt": "a", "min_p": 2},
    "beam search": {"prompt": "a", "beam_width": 2},
    "max_tokens over the limit": {"prompt": "a", "max_tokens": 5001},
    "max_tokens not a number": {"prompt": "a", "max_tokens": "10"},
    "too many choices": {"prompt": ["a", "b"], "n": 4},
    "token ids": {"prompt": [1, 2, 3]},
    "empty prompt list": {"prompt": []},
    "logprobs too many": {"prompt": "a", "logprobs": 99},
    "presence_penalty": {"prompt": "a", "presence_penalty": 0.5},
    "negative seed": {"prompt": "a", "seed": -1},
    "seed a float": {"prompt": "a", "seed": 1.5},
    "stream not a boolean": {"prompt": "a", "stream": "yes"},
    "empty stop": {"prompt": "a", "stop": [""]},
    "unseen character": {"prompt": "the €"},
    "label without labels": {"prompt": "a", "label": "poetry"},
    "guidance without labels": {"prompt": "a", "guidance": 2},
    "bad stream_options": {"prompt": "a", "stream": True, "stream_options": {"x": 1}},
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_bad_completion_request_is_a_400_with_one_line_and_the_server_goes_on(client, body):
    answer = client.post("/v1/completions", json=body)
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert message and "\n" not in message and len(message) <= 500
    assert client.post("/v1/completions", json={"prompt": "a", "max_tokens": 3}).status_code == 200


def test_requests_that_are_not_json_too_large_or_for_no_model_are_refused(client):
    not_json = client.post("/v1/completions", content=b"{", headers=_JSON)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    form = client.post("/v1/completions", content=b"prompt=a")
    assert form.status_code == 415 and "application/json" in form.json()["error"]["message"]
    huge = client.post("/v1/completions", json={"prompt": "a" * 5000})
    assert huge.status_code == 413
    missing = client.post("/v1/completions", json={"prompt": "a", "model": "gpt-4"})
    assert missing.status_code == 404 and "tiny" in missing.json()["error"]["message"]
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/completions").status_code == 405
    empty = client.post("/v1/score", json={"input": ""})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/score", "/v1/classify"])
def test_a_body_nested_too_deeply_is_invalid_json_not_a_server_error(client, path):
    # 2000: past Python's recursion limit (1000), within the small body limit; 960: parsed,
    # but too deep to quote in the message of a bad value; 40: more than any request needs.
    for depth in (2000, 960, 40):
        body = b'{"model":"tiny","temperature":' + b"[" * depth + b"]" * depth + b"}"
        answer = client.post(path, content=body, headers=_JSON)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["message"].startswith("the body is not valid JSON")
    assert client.post("/v1/completions", json={"prompt": "a", "max_tokens": 3}).status_code == 200


# The request field each bad value is in; null where no one field is at fault.
BAD_FIELDS = {
    "max_tokens": {"max_tokens": -1},
    "n": {"n": 0},
    "logprobs": {"logprobs": 99},
    "temperature": {"temperature": -1},
    "top_k": {"top_k": 0},
    "top_p": {"top_p": 1.5},
    "min_p": {"min_p": 2},
    "repetition_penalty": {"repetition_penalty": 0},
    "stop": {"stop": [""]},
    "seed": {"seed": -1},
    "unknown": {"unknown": "drop"},
    "label": {"label": "poetry"},  # a model without labels
    "guidance": {"guidance": -1},
    "prompt": {"prompt": [1, 2]},
}


@pytest.mark.parametrize("field, body", BAD_FIELDS.items(), ids=BAD_FIELDS.keys())
def test_a_400_names_the_field_at_fault(client, field, body):
    answer = client.post("/v1/completions", json={"prompt": "a", **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == field, answer.text


def test_the_param_of_a_bad_combination_is_the_field_that_breaks_it(client):
    # Sample i uses seed + i: the highest seed is too high for two samples, whatever the order.
    for body in ({"seed": 2**63 - 1, "n": 2}, {"n": 2, "seed": 2**63 - 1}):
        answer = client.post("/v1/completions", json={"prompt": "a", **body})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "seed"
    guided = client.post("/v1/completions", json={"prompt": "a", "guidance": 2})
    assert guided.status_code == 400 and guided.json()["error"]["param"] == "guidance"
    labelled = client.post("/v1/score", json={"input": "the", "label": "poetry"})
    assert labelled.status_code == 400 and labelled.json()["error"]["param"] == "label"


def test_score_takes_unknown_as_completions_do(client, sampler):
    unseen = client.post("/v1/score", json={"input": "the lazy €"})
    assert unseen.status_code == 400 and '"unknown": "skip"' in unseen.json()["error"]["message"]
    answer = client.post("/v1/score", json={"input": "the lazy €", "unknown": "skip"})
    assert answer.status_code == 200, answer.text
    expected = sampler.score("the lazy €", unknown="skip")
    assert answer.json()["data"][0]["perplexity"] == pytest.approx(expected.perplexity)
    assert answer.json()["data"][0]["characters"] == expected.num_characters
    bad = client.post("/v1/score", json={"input": "the", "unknown": "drop"})
    completion = client.post("/v1/completions", json={"prompt": "the", "unknown": "drop"})
    assert bad.status_code == 400 and bad.json()["error"] == completion.json()["error"]
    assert bad.json()["error"]["param"] == "unknown"


def test_only_loopback_host_names_are_answered(client):
    # A page on another site that points its own name at 127.0.0.1 (DNS rebinding).
    answer = client.get("/v1/models", headers={"Host": "attacker.example"})
    assert answer.status_code == 403
    assert client.get("/v1/models", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/v1/models", headers={"Host": "[::1]:8000"}).status_code == 200


def test_the_playground_page_needs_no_other_host(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<title>charlm playground</title>" in html
    for reference in ("http://", "https://", 'src="//', "url(", "@import"):
        assert reference not in html, reference


_JSON = {"Content-Type": "application/json"}


class FailingLM(BigramLM):
    """A bigram model whose network fails on every fourth call."""

    calls = 0

    def forward(self, tokens, state=None):
        FailingLM.calls += 1
        if FailingLM.calls % 4 == 0:
            raise RuntimeError("the device went away")
        return super().forward(tokens, state)


def test_a_model_that_fails_while_drawing_is_a_500_or_an_error_event():
    from starlette.testclient import TestClient

    from charlm.serve.app import create_app
    from tests.serve.conftest import model_set

    tokenizer = CharTokenizer(["\n", "a", "b"])
    failing = Sampler(FailingLM(cycle_table([0, 1, 2], 3)), tokenizer)
    app = create_app(model_set(SMALL_LIMITS, failing=failing), SMALL_LIMITS)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        FailingLM.calls = 0
        whole = client.post("/v1/completions", json={"prompt": "ab", "max_tokens": 9})
        assert whole.status_code == 500
        assert whole.json()["error"]["message"] == (
            "internal error: RuntimeError: the device went away"
        )
        FailingLM.calls = 0
        chunks = stream(client, prompt="ab", max_tokens=9, temperature=0)
        # The prefix took the first call; two steps gave two tokens, the third failed.
        assert streamed_texts(chunks[:-1] + ["[DONE]"]) == {0: "\na"}
        assert chunks[-1]["error"]["message"] == "drawing failed: the device went away"
        assert client.get("/health").json()["models"][0]["drawing"] == 0


def test_the_server_loads_its_models_in_int8_when_asked(checkpoint):
    from charlm.errors import ConfigError
    from charlm.models.quantized import Int8Recurrent
    from charlm.serve.config import ServeConfig
    from charlm.serve.models import load_models

    models = load_models([checkpoint], ServeConfig(), quantize="int8")
    try:
        (model,) = models
        assert isinstance(model.sampler.model.rnn, Int8Recurrent)
        assert model.sampler.device.type == "cpu"
        int8 = load(checkpoint, device="cpu", quantize="int8")
        assert model.sampler.generate("the ", 40, seed=1) == int8.generate("the ", 40, seed=1)
        # The model's size, not what int8 leaves as parameters (packed weights are not).
        floats = load(checkpoint, device="cpu").model.parameters()
        assert model.card()["parameters"] == sum(p.numel() for p in floats)
    finally:
        models.close()
    with pytest.raises(ConfigError, match="CPU only"):
        load_models([checkpoint], ServeConfig(device="cuda"), quantize="int8")


# Lone surrogates: valid JSON (a \ud800 escape not followed by its pair), but no text.
SURROGATE_BODIES = {
    "prompt": ("/v1/completions", r'{"prompt": "a\ud800b", "max_tokens": 3}', "prompt"),
    "streamed": ("/v1/completions", r'{"prompt": "a\ud800b", "stream": true}', "prompt"),
    "prompt list": ("/v1/completions", r'{"prompt": ["a", "\udfffb"]}', "prompt"),
    "stop": ("/v1/completions", r'{"prompt": "a", "stop": ["x\ud800"]}', "stop"),
    "field name": ("/v1/completions", r'{"prompt": "a", "\ud800": 1}', r"\ud800"),
    "nested name": ("/v1/completions", r'{"logit_bias": {"\ud800": 1}}', "logit_bias"),
    "score": ("/v1/score", r'{"input": ["the", "th\ud800e"], "unknown": "skip"}', "input"),
    "classify": ("/v1/classify", r'{"input": "Iv\ud800an", "unknown": "skip"}', "input"),
}


@pytest.mark.parametrize(
    "path, body, param", SURROGATE_BODIES.values(), ids=SURROGATE_BODIES.keys()
)
def test_text_with_a_lone_surrogate_is_a_400_naming_its_field(client, path, body, param):
    answer = client.post(path, content=body.encode("ascii"), headers=_JSON)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param
    assert "lone surrogate" in error["message"] and "\n" not in error["message"]
    if param != "logit_bias":  # the escape itself is quoted, as text that can be sent
        assert "\\ud800" in error["message"] or "\\udfff" in error["message"]
    assert client.post("/v1/completions", json={"prompt": "a", "max_tokens": 3}).status_code == 200


def test_a_pair_of_surrogates_is_one_character_and_no_error(client):
    # U+1F600 as JSON escapes it: a pair, which is text (the tiny model never saw it).
    body = r'{"prompt": "the \ud83d\ude00", "max_tokens": 3, "unknown": "skip"}'
    answer = client.post("/v1/completions", content=body.encode("ascii"), headers=_JSON)
    assert answer.status_code == 200, answer.text


def test_an_error_message_quoting_a_lone_surrogate_escapes_it():
    from charlm.serve.app import error_response

    response = error_response(400, "unknown field 'a\ud800'", param="a\ud800")
    error = json.loads(response.body)["error"]
    assert error["message"] == "unknown field 'a\\ud800'" and error["param"] == "a\\ud800"


def test_a_number_of_more_digits_than_python_converts_is_a_400(sampler):
    from starlette.testclient import TestClient

    from charlm.serve.app import create_app
    from tests.serve.conftest import model_set

    config = dataclasses.replace(SMALL_LIMITS, max_body=1 << 16)  # room for 4,301 digits
    app = create_app(model_set(config, tiny=sampler), config)
    with TestClient(app, base_url="http://localhost") as client:
        for where in ("seed", "user", "unknown_field"):
            body = b'{"prompt": "a", "%s": %s}' % (where.encode(), b"9" * 4301)
            answer = client.post("/v1/completions", content=body, headers=_JSON)
            assert answer.status_code == 400, answer.text
            message = answer.json()["error"]["message"]
            assert message.startswith("the body is not valid JSON") and "too large" in message
            assert answer.json()["error"]["param"] is None
        # Fewer digits parse, but are beyond any float the options are checked as.
        for field in ("seed", "temperature", "top_k"):
            body = b'{"prompt": "a", "%s": %s}' % (field.encode(), b"9" * 4000)
            answer = client.post("/v1/completions", content=body, headers=_JSON)
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["param"] == field


@pytest.mark.parametrize("path", ["/v1/score", "/v1/classify"])
def test_input_and_inputs_together_are_refused(client, path):
    answer = client.post(path, json={"input": "the", "inputs": ["a stitch"]})
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert "input " in message and "inputs" in message


def test_a_server_on_another_loopback_address_answers_to_it(sampler):
    from starlette.testclient import TestClient

    from charlm.serve.app import create_app
    from charlm.serve.config import ServeConfig
    from tests.serve.conftest import model_set

    config = ServeConfig(host="127.0.0.2", port=8000)
    assert config.loopback
    app = create_app(model_set(config, tiny=sampler), config)
    with TestClient(app, base_url="http://127.0.0.2:8000") as client:
        assert client.get("/v1/models").status_code == 200  # the address it prints
        assert client.get("/v1/models", headers={"Host": "localhost:8000"}).status_code == 200
        assert client.get("/v1/models", headers={"Host": "attacker.example"}).status_code == 403


def test_which_hosts_are_loopback():
    from charlm.serve.config import ServeConfig

    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        assert ServeConfig(host=host).loopback, host
    for host in ("0.0.0.0", "192.0.2.1", "::", "127.example.com"):
        assert not ServeConfig(host=host).loopback, host


def test_a_checkpoint_given_as_dot_is_named_after_its_directory(checkpoint, monkeypatch):
    from charlm.serve.config import ServeConfig
    from charlm.serve.models import load_models

    monkeypatch.chdir(checkpoint)
    models = load_models([".", f"../{checkpoint.name}/"], ServeConfig())
    try:
        assert [model.id for model in models] == [checkpoint.name, f"{checkpoint.name}-2"]
    finally:
        models.close()
