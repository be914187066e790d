"""Shared fixtures: tiny texts and models, and the real corpora beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"

TINY_TEXT = (
    "the quick brown fox jumps over the lazy dog.\n"
    "a stitch in time saves nine.\n"
    "all that glitters is not gold.\n"
) * 20


def shared_corpus(relative: str) -> Path:
    """A file from ../shared/corpora, or skip the test saying why."""
    path = SHARED_CORPORA / relative
    if not path.is_file():
        pytest.skip(f"needs the shared corpora: {path} is absent")
    return path


@pytest.fixture
def tiny_book(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # The tests' tiny models gain nothing from a second thread, and on a busy machine the two
    # spin waiting for each other at every step: the quick core took three times the CPU time.
    # Tests of the thread settings set their own; subprocesses keep PyTorch's choice.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_token_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    # Never read or fill the user's ~/.cache/charlm from a test.
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path_factory.mktemp("charlm-cache")))
