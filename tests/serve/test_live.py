"""The real server (Uvicorn on a loopback port): OpenAI's own Python client, unchanged, and
clients that hang up in the middle."""

from __future__ import annotations

import httpx
import pytest

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
