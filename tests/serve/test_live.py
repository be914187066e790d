"""The real server (Uvicorn on a loopback port): OpenAI's own Python client, unchanged, and
clients that hang up in the middle."""

from __future__ import annotations

import time

import httpx
import pytest

from charlm.serve.config import ServeConfig
from tests.serve.conftest import LiveServer, SlowCalls, model_set

openai = pytest.importorskip("openai", reason="the openai client is not installed (charlm[dev])")


def test_the_openai_client_streams_a_completion_unchanged(live_server, sampler):
    client = openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0)
    assert [model.id for model in client.models.list()] == ["tiny"]
    chunks = client.completions.create(
        model="tiny", prompt="the ", max_tokens=60, temperature=0.7, seed=9, stream=True
    )
    texts, finish = [], None
    for chunk in chunks:
        texts.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    # The first piece goes at once, what the tiny model draws in the next 20 ms together.
    assert len(texts) >= 2 and finish == "length"
    assert "the " + "".join(texts) == sampler.generate("the ", 60, 0.7, 9)
    whole = client.completions.create(model="tiny", prompt="the ", max_tokens=60, seed=9)
    assert whole.choices[0].text == sampler.generate("the ", 60, 0.8, 9)[4:]
    assert whole.usage.completion_tokens == 60
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tiny", prompt="a", temperature=-1)


def test_a_client_that_hangs_up_a_stream_stops_its_sampling(live_server):
    body = {"model": "tiny", "prompt": "the ", "max_tokens": 100_000, "stream": True}
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        with client.stream("POST", "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            received = [next(lines) for _ in range(10)]
        assert all(line.startswith("data: ") or not line for line in received)
    # 100,000 tokens take many seconds; hanging up must end them much sooner.
    assert live_server.wait_idle("tiny", seconds=5) < 5


def test_a_client_that_hangs_up_while_waiting_for_a_whole_completion_stops_it(live_server):
    body = {"model": "tiny", "prompt": "the ", "max_tokens": 100_000}
    with httpx.Client(base_url=live_server.url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/completions", json=body)
    assert live_server.wait_idle("tiny", seconds=5) < 5


def _gives_up(server: LiveServer, body: dict) -> None:
    """Post `body` and hang up after 0.3 s, before any answer."""
    with httpx.Client(base_url=server.url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/completions", json=body)


def _until(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_client_that_hangs_up_while_its_request_waits_for_room_leaves_the_queue(sampler):
    config = ServeConfig(max_tokens=100_000, max_batch=1)  # one request drawn at a time
    with LiveServer(model_set(config, tiny=sampler), config) as server:
        engine = server.models.get("tiny").engine
        body = {"model": "tiny", "prompt": "the ", "max_tokens": 100_000, "stream": True}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            with client.stream("POST", "/v1/completions", json=body) as running:
                lines = running.iter_lines()  # held: dropped, it would close the stream
                next(lines)  # drawing: the batch is full
                _gives_up(server, {"model": "tiny", "prompt": "a ", "max_tokens": 10})
                # Out of the queue long before the first one's 100,000 tokens are drawn.
                assert _until(lambda: engine.waiting == 0)
                assert engine.active_rows == 1
                health = client.get("/health").json()["models"][0]
                assert health["waiting"] == 0 and health["drawing"] == 1
        assert server.wait_idle("tiny") < 5


def test_a_client_that_hangs_up_while_its_prompt_is_read_stops_the_reading(sampler):
    calls = SlowCalls(sampler, chunk_len=1)  # a call a character, 2 ms each: 5,000, 10 s
    config = ServeConfig(max_tokens=100)
    with LiveServer(model_set(config, tiny=sampler), config) as server:
        _gives_up(server, {"model": "tiny", "prompt": "the lazy dog " * 385, "max_tokens": 10})
        assert server.wait_idle("tiny", seconds=5) < 5
    assert calls.count < 4000  # the prompt was not read to its end
