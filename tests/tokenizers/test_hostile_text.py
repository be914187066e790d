"""Hostile and odd text: arbitrary Unicode, control characters, NUL, lone surrogates, one long
line, one repeated character. Tokenizers round-trip or fail with a TokenizerError, training
trains or refuses with a CharlmError, and sampling never crashes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from charlm.checkpoint import load_checkpoint, read_config
from charlm.errors import CharlmError, TokenizerError
from charlm.models import ModelConfig, build_model
from charlm.sampling import Sampler, load
from charlm.tokenizers import train_tokenizer
from charlm.training import TrainConfig
from charlm.training.run import train_book
from tests.helpers import single_thread

# Characters that break naive code: NUL and other controls, CR and CRLF, Unicode line and
# paragraph separators, a byte-order mark, the replacement character, a ZWJ sequence, a flag,
# combining marks.
NASTY = [
    "\x00", "\x01", "\x1b", "\x7f", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029",
    "\ufeff", "\ufffd", "👩\u200d👩\u200d👧", "🇫🇷", "e\u0301", "\U0010ffff", "<unk>", "##",
]  # fmt: skip
LONE_SURROGATES = ["\ud800", "\udfff", "\udcff"]
# Every code point, lone surrogates included (hypothesis leaves those out by default).
any_char = st.characters(exclude_categories=())
hostile_text = st.lists(
    st.one_of(st.text(any_char, max_size=12), st.sampled_from(NASTY + LONE_SURROGATES)),
    max_size=10,
).map("".join)
# A book's worth of ordinary text with a few hostile pieces put in at random places: text that
# gets past the binary check and trains.
PLAIN = "It was the best of times; it was the worst of times.\nNaïve Ωμέγα 漢字 😀 don't\n" * 6
sprinkled_text = st.lists(
    st.tuples(st.integers(0, len(PLAIN)), st.text(any_char, max_size=3)), max_size=6
).map(lambda cuts: _insert(PLAIN, cuts))


def _insert(text: str, cuts: list[tuple[int, str]]) -> str:
    for at, piece in sorted(cuts, reverse=True):
        text = text[:at] + piece + text[at:]
    return text


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


TOKENIZERS = [
    ("char", {}),
    ("char", {"unk": True, "lowercase": True}),
    ("byte", {}),
    ("word", {}),
    ("bpe", {"vocab_size": 300}),
    ("bpe", {"vocab_size": 300, "byte_level": False}),
    ("wordpiece", {"vocab_size": 300}),
    ("unigram", {"vocab_size": 100}),
]
# Tokenizers whose round trip is exact on any valid Unicode text they were trained on.
EXACT = {"char", "byte", "bpe"}
# derandomize: the same examples on every run (and in CI), so a failure reproduces at once.
FAST = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), TOKENIZERS)
@FAST
@given(book=hostile_text, text=hostile_text)
def test_tokenizers_round_trip_or_fail_cleanly(name, options, book, text):
    try:
        tokenizer = train_tokenizer(name, book, options)
    except TokenizerError:
        return  # e.g. a book with no characters, or lone surrogates for a Rust tokenizer
    for policy in (None, "skip", "unk"):
        try:
            ids = tokenizer.encode_array(book + text, policy)
        except TokenizerError:
            continue
        assert ids.dtype.kind == "i" and (
            len(ids) == 0 or 0 <= ids.min() <= ids.max() < tokenizer.vocab_size
        )
        decoded = tokenizer.decode(ids)
        assert isinstance(decoded, str)
        exact = name in EXACT and not options.get("lowercase") and options.get("byte_level", True)
        if exact and policy is None and not _has_surrogate(book + text):
            assert decoded == book + text
        streamed = "".join(tokenizer.stream_decoder().feed(ids))
        assert isinstance(streamed, str)


@pytest.fixture(scope="module")
def samplers():
    """Untrained tiny models over three kinds of vocabulary: nothing about them is tuned."""
    book = "The cat sat.\nA dog ran; it's 5 o'clock — Ωμέγα 😀\n" * 20
    made = []
    for name in ("char", "byte", "word"):
        tokenizer = train_tokenizer(name, book)
        torch.manual_seed(0)
        model = build_model(
            ModelConfig(tokenizer.vocab_size, embed_size=8, hidden_size=8, num_layers=1)
        )
        made.append(Sampler(model, tokenizer))
    return made


VALID_SETTINGS = {
    "length": st.integers(0, 12),
    "temperature": st.one_of(st.floats(0, 5), st.sampled_from([0.0, 1e-30, 1e30])),
    "top_k": st.one_of(st.none(), st.integers(1, 10**9)),
    "top_p": st.floats(1e-9, 1),
    "min_p": st.one_of(st.just(0.0), st.floats(0, 1)),
    "repetition_penalty": st.one_of(st.floats(0.01, 100), st.sampled_from([1e-300, 1e300])),
    "stop": st.lists(hostile_text.filter(bool), max_size=2),
    "num_samples": st.integers(1, 3),
    "beam_width": st.just(1),
    "seed": st.one_of(st.none(), st.integers(0, 2**32)),
    "unknown": st.sampled_from([None, "skip", "error", "unk"]),
}
ODD_SETTINGS = {
    "length": [-1, 1.5],
    "temperature": [float("nan"), float("inf"), -1.0],
    "top_k": [0, -2, 1.5],
    "top_p": [0.0, 1.5, float("nan")],
    "min_p": [-0.5, 1.5, float("nan")],
    "repetition_penalty": [0.0, float("nan"), -1.0],
    "stop": [[""], [None]],
    "num_samples": [0],
    "beam_width": [0, 2, 3],  # 2 and 3 run beam search, or clash with sampling settings
    "seed": [-1, 2**64, "7"],
    "unknown": ["bogus"],
}


@st.composite
def sampling_settings(draw) -> dict:
    """Valid settings, with one of them made odd in about a third of the examples."""
    chosen = {key: draw(strategy) for key, strategy in VALID_SETTINGS.items()}
    if draw(st.sampled_from([False, False, True])):
        key = draw(st.sampled_from(sorted(ODD_SETTINGS)))
        chosen[key] = draw(st.sampled_from(ODD_SETTINGS[key]))
    return chosen


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(which=st.integers(0, 2), prefix=hostile_text, options=sampling_settings())
def test_sampling_any_prefix_with_any_settings_never_crashes(samplers, which, prefix, options):
    sampler = samplers[which]
    try:
        samples = sampler.samples(prefix, **options)
    except CharlmError as exc:
        event(f"refused: {type(exc).__name__}")
        return  # a bad setting or a prefix the vocabulary cannot take: a typed, clean refusal
    event("sampled")
    assert len(samples) == options["num_samples"]
    for sample in samples:
        assert isinstance(sample.text, str) and len(sample.token_ids) <= options["length"]


TINY_RUN = dict(
    model={"hidden_size": 8, "embed_size": 8, "num_layers": 1},
    training=TrainConfig(batch_size=2, seq_len=4, max_steps=2),
    device="cpu",
)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    text=st.one_of(hostile_text, sprinkled_text, sprinkled_text),
    tokenizer=st.sampled_from(["char", "byte", "word"]),
)
@pytest.mark.slow
def test_training_on_any_text_trains_or_refuses_clearly(tmp_path_factory, text, tokenizer):
    book = tmp_path_factory.mktemp("book") / "book.txt"
    book.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates: invalid UTF-8
    out = book.parent / "ck"
    try:
        train_book(book, out=out, tokenizer=tokenizer, **TINY_RUN)
    except CharlmError as exc:
        assert "\n" not in str(exc).strip()
        event(f"refused: {type(exc).__name__}")
        return
    event("trained")
    sampler = load(out, device="cpu")
    assert isinstance(sampler.generate("", length=10, seed=0), str)


def test_a_book_of_one_repeated_character_trains_and_samples(tmp_path):
    book = tmp_path / "a.txt"
    book.write_text("a" * 3000)
    trained = train_book(book, out=tmp_path / "ck", **TINY_RUN)
    checkpoint = load_checkpoint(trained.checkpoint)
    assert checkpoint.tokenizer.vocab_size == 1
    assert trained.result.train_perplexity == pytest.approx(1.0)
    sampler = load(trained.checkpoint, device="cpu")
    assert sampler.generate("", length=20, seed=1) == "a" * 20
    assert sampler.generate("aa", length=3, temperature=0) == "aaaaa"
    assert sampler.samples("a", length=3, beam_width=2)[0].text == "aaa"
    with pytest.raises(TokenizerError, match="'b'"):
        sampler.generate("b", length=3)


@pytest.mark.parametrize(
    ("tokenizer", "options", "text"),
    [
        ("word", {}, "aaa " * 500),  # one word: markers, newline and "aaa"
        ("bpe", {"vocab_size": "1", "byte_level": "false"}, "a" * 2000),
        ("wordpiece", {"vocab_size": "1"}, "a" * 2000),
    ],
)
def test_a_vocabulary_of_almost_nothing_trains_or_refuses(tmp_path, tokenizer, options, text):
    book = tmp_path / "book.txt"
    book.write_text(text)
    try:
        trained = train_book(
            book, out=tmp_path / "ck", tokenizer=tokenizer, tokenizer_options=options, **TINY_RUN
        )
    except CharlmError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(load(trained.checkpoint, device="cpu").generate("", length=5), str)


@pytest.mark.parametrize("tokenizer", ["char", "word", "bpe"])
def test_one_extremely_long_line_trains(tmp_path, tokenizer):
    book = tmp_path / "line.txt"
    book.write_text("all work and no play makes jack a dull boy " * 3000)  # 132 kB, no newline
    settings = TrainConfig(batch_size=8, seq_len=64, max_steps=2)  # few batches to validate
    trained = train_book(
        book,
        out=tmp_path / "ck",
        tokenizer=tokenizer,
        training=settings,
        device="cpu",
        model=TINY_RUN["model"],
    )
    assert trained.result.steps == 2
    assert isinstance(load(trained.checkpoint, device="cpu").generate("all", length=5), str)


@pytest.mark.parametrize("text", ["abc\x00def" * 50, "\x00" * 100])
def test_nul_bytes_in_a_file_are_refused_as_binary_but_strings_encode(tmp_path, text):
    book = tmp_path / "nul.txt"
    book.write_text(text)
    with pytest.raises(CharlmError, match="binary"):
        train_book(book, out=tmp_path / "ck", **TINY_RUN)
    for name in ("char", "byte", "bpe"):
        tokenizer = train_tokenizer(name, text)
        assert tokenizer.decode(tokenizer.encode_array(text)) == text


@pytest.mark.parametrize("surrogate", LONE_SURROGATES)
def test_lone_surrogates_in_strings_are_kept_or_refused_by_every_tokenizer(surrogate):
    text = f"ab{surrogate}cd"
    assert (
        train_tokenizer("char", text).decode(train_tokenizer("char", text).encode_array(text))
        == text
    )
    for name, options in TOKENIZERS:
        try:
            tokenizer = train_tokenizer(name, "abcd " * 10, options)
            tokenizer.decode(tokenizer.encode_array(text, "skip"))
        except TokenizerError as exc:
            assert "surrogate" in str(exc)


def odd_named_book(directory) -> str:
    """A book whose file name holds a byte that is not UTF-8 (Python sees a lone surrogate)."""
    name = os.fsdecode(b"caf\xe9 \xff book.txt")
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write("the quick brown fox jumps over the lazy dog.\n" * 40)
    return path


@pytest.mark.slow
def test_a_book_whose_name_is_not_utf8_trains_saves_and_resumes(tmp_path):
    path = odd_named_book(tmp_path)
    trained = train_book(path, out=tmp_path / "ck", **TINY_RUN)
    config = read_config(trained.checkpoint)
    assert config["data"]["books"][0]["path"] == path  # escaped in the JSON, exact when read
    (tmp_path / "ck" / "config.json").read_text(encoding="utf-8")  # valid UTF-8 on disk
    resumed = train_book(
        resume=tmp_path / "ck",
        training=TrainConfig(batch_size=2, seq_len=4, max_steps=4),
        device="cpu",
    )
    assert resumed.result.steps == 4


@pytest.mark.slow
def test_the_cli_takes_a_book_name_that_is_not_utf8(tmp_path):
    path = odd_named_book(tmp_path)
    args = [
        os.fsencode(path),
        b"--out",
        os.fsencode(tmp_path / "ck"),
        b"--hidden",
        b"8",
        b"--embed",
        b"8",
        b"--layers",
        b"1",
        b"--batch-size",
        b"2",
        b"--seq-len",
        b"4",
        b"--max-steps",
        b"2",
    ]
    env = dict(os.environ, CHARLM_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"charlm", b"train", *args],
        capture_output=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    assert b"Traceback" not in result.stderr
    bad_prefix = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"charlm",
            b"generate",
            os.fsencode(tmp_path / "ck"),
            b"--prefix",
            b"caf\xe9",
        ],
        capture_output=True,
    )
    assert bad_prefix.returncode == 2
    lines = bad_prefix.stderr.decode("utf-8", "replace").strip().splitlines()
    assert len(lines) == 1 and "not valid UTF-8" in lines[0]
