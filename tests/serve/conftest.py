"""Servers for the serve tests: in-process (Starlette's TestClient) and real (Uvicorn on a
loopback port chosen by the system), over tiny untrained models."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed (charlm[serve])")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx (charlm[dev])")

from starlette.testclient import TestClient  # noqa: E402

from charlm.sampling import Sampler, load  # noqa: E402
from charlm.serve.app import create_app  # noqa: E402
from charlm.serve.config import ServeConfig  # noqa: E402
from charlm.serve.models import ModelSet, serve_sampler  # noqa: E402
from tests.conftest import TINY_TEXT  # noqa: E402
from tests.tiny_models import save_tiny_checkpoint  # noqa: E402

# Every piece its own event: the tiny model draws a whole completion within the default interval.
SMALL_LIMITS = ServeConfig(max_tokens=5000, max_choices=6, max_body=4096, stream_interval=0)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny", TINY_TEXT)


@pytest.fixture
def sampler(checkpoint: Path) -> Sampler:
    return load(checkpoint, device="cpu")


def model_set(config: ServeConfig, **samplers: Sampler) -> ModelSet:
    return ModelSet([serve_sampler(name, s, config) for name, s in samplers.items()])


@pytest.fixture
def client(sampler: Sampler) -> Iterator[TestClient]:
    """The app over one model, "tiny", with small limits; closing it stops the engine."""
    app = create_app(model_set(SMALL_LIMITS, tiny=sampler), SMALL_LIMITS)
    with TestClient(app, base_url="http://localhost") as test_client:
        yield test_client


class SlowCalls:
    """Makes each forward call of `sampler` (one part of a prompt's reading: `chunk_len`
    tokens) 2 ms slower, and counts them, so that a reading lasts long enough to interrupt."""

    def __init__(self, sampler: Sampler, chunk_len: int) -> None:
        self.count = 0
        sampler._chunk_len = chunk_len
        call = sampler._call

        def slow(tokens, state, labels):
            self.count += 1
            time.sleep(0.002)
            return call(tokens, state, labels)

        sampler._call = slow


class LiveServer:
    """Uvicorn serving `models` on a loopback socket in a thread of this process."""

    def __init__(self, models: ModelSet, config: ServeConfig) -> None:
        import uvicorn

        self.models = models
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))  # a free port, held from now on
        port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        settings = uvicorn.Config(create_app(models, config), log_level="warning")
        self._server = uvicorn.Server(settings)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()

    def wait_idle(self, model: str, seconds: float = 10.0) -> float:
        """Seconds until `model` draws nothing; fails after `seconds`."""
        start = time.monotonic()
        engine = self.models.get(model).engine
        while engine.active_rows or engine.waiting:
            if time.monotonic() - start > seconds:
                raise AssertionError(f"{model} still drawing after {seconds} s")
            time.sleep(0.01)
        return time.monotonic() - start


@pytest.fixture
def live_server(sampler: Sampler) -> Iterator[LiveServer]:
    config = ServeConfig(max_tokens=100_000)
    with LiveServer(model_set(config, tiny=sampler), config) as server:
        yield server
