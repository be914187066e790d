"""The CLI under fire: every command, bad option values and odd paths.

Each case must end with a non-zero exit, exactly one line on stderr that starts with
"Error:", no traceback anywhere, and the exit code Click's convention gives it: 2 for a
usage error (a bad option or argument), 1 for a failure at run time (a missing or broken
file, a book that cannot be used).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from charlm.cli import cli, one_line
from charlm.corpus import load_catalog
from tests.conftest import TINY_TEXT
from tests.helpers import TINY_TRAIN_ARGS, single_thread

FAST = [*TINY_TRAIN_ARGS, "--max-steps", "1", "--no-cache"]
USAGE, RUNTIME = 2, 1


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A checkpoint and a set of odd files and paths, made once for the whole matrix."""
    root = tmp_path_factory.mktemp("fire")
    book = root / "book.txt"
    book.write_text(TINY_TEXT, encoding="utf-8")
    ck = root / "ck"
    result = CliRunner().invoke(cli, ["train", str(book), "--out", str(ck), *FAST])
    assert result.exit_code == 0, result.output
    (root / "empty.txt").write_text("")
    (root / "adir").mkdir()
    (root / "dir.png").mkdir()
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(300))
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{")
    (root / "zebra.txt").write_text("Zebra Quagga\n")
    odd = root / "we ird\nname ü\x01.txt"  # a line break and a control character in a name
    odd.write_bytes(bytes(range(256)) * 4)
    huge = root / "huge-tokenizer.json"
    with open(huge, "wb") as f:  # sparse: 200 MB on paper, nothing on disk
        f.truncate(200 * 1024 * 1024)
    (root / "bad-tokenizer.json").write_text('{"model": {"type": "WordLevel", "vocab": 3}}')
    (root / "far-ids.json").write_text(
        '{"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 2000000000},'
        ' "unk_token": "a"}}'
    )
    (root / "metrics-binary").mkdir()
    (root / "metrics-binary" / "metrics.jsonl").write_bytes(bytes(range(256)) * 8)
    (root / "metrics-odd").mkdir()
    (root / "metrics-odd" / "metrics.jsonl").write_text(
        '{"step": "one", "train_perplexity": 2}\n{"step": 2, "train_perplexity": "x"}\n'
        '[1, 2]\n{"step": 3, "val_loss": {}, "val_perplexity": 2}\n'
    )
    return root


def matrix(p, book, ck, catalogue_name):
    """(arguments, expected exit code, a fragment of the message) for every command."""
    missing = p / "missing.txt"
    odd = p / "we ird\nname ü\x01.txt"
    not_utf8 = p / os.fsdecode(b"caf\xe9-\xff.txt")  # a name Python holds as lone surrogates
    train = ["train", book, *FAST, "--out", p / "never"]  # no case may get as far as saving
    gen = ["generate", ck]
    cases = [
        # the group itself
        (["--bogus"], USAGE, "No such option"),
        (["nosuchcommand"], USAGE, "No such command"),
        (["train", "--help", "extra"], 0, None),
        # train: paths
        (["train"], USAGE, "missing BOOKS"),
        (["train", missing, *FAST], RUNTIME, "no such file"),
        (["train", p / "adir", *FAST], RUNTIME, "no .txt files"),
        (["train", p / "empty.txt", *FAST], RUNTIME, "empty"),
        (["train", p / "image.png", *FAST], RUNTIME, "binary"),
        (["train", odd, *FAST], RUNTIME, "\\n"),
        (["train", not_utf8, *FAST], RUNTIME, "no such file"),
        (["train", "-x.txt"], USAGE, "No such option"),
        (["train", "/dev/zero", *FAST], RUNTIME, "is a device"),
        ([*train, "--val", "/dev/zero"], RUNTIME, "is a device"),
        (["evaluate", ck, "/dev/urandom"], RUNTIME, "is a device"),
        ([*train, "--out", p / "image.png"], RUNTIME, "is a file"),
        ([*train, "--out", p / "image.png" / "sub"], RUNTIME, "Not a directory"),
        ([*train, "--val", missing], RUNTIME, "No such file"),
        ([*train, "--val", p / "adir"], USAGE, "directory"),
        ([*train, "--val", book], RUNTIME, "validation"),
        ([*train, "--cache-dir", p / "image.png"], USAGE, "file"),
        (["train", "--resume", missing], RUNTIME, "does not exist"),
        (["train", "--resume", p / "adir"], RUNTIME, "no config.json"),
        (["train", "--resume", p / "broken"], RUNTIME, "not valid JSON"),
        (["train", "--resume", ck, "--init-from", ck], USAGE, "drop --init-from"),
        (["train", "--resume", ck, "--out", p / "x"], USAGE, "drop --out"),
        ([*train, "--init-from", p / "image.png"], RUNTIME, "not a checkpoint directory"),
        # train: option values
        ([*train, "--hidden", "0"], USAGE, "--hidden"),
        ([*train, "--hidden", "many"], USAGE, "--hidden"),
        ([*train, "--layers", "-1"], USAGE, "--layers"),
        ([*train, "--dropout", "1"], USAGE, "--dropout"),
        ([*train, "--dropout", "nan"], USAGE, "dropout"),
        ([*train, "--lr", "0"], USAGE, "--lr"),
        ([*train, "--lr", "nan"], USAGE, "learning rate"),
        ([*train, "--clip", "nan"], USAGE, "clipping"),
        ([*train, "--batch-size", "0"], USAGE, "--batch-size"),
        ([*train, "--seq-len", str(10**30)], RUNTIME, "too few"),
        ([*train, "--epochs", "-1"], USAGE, "--epochs"),
        ([*train, "--max-time", "soon"], USAGE, "duration"),
        ([*train, "--max-time", "0"], USAGE, "positive"),
        ([*train, "--max-steps", "0"], USAGE, "--max-steps"),
        ([*train, "--seed", "-1"], USAGE, "--seed"),
        ([*train, "--seed", str(2**80)], USAGE, "--seed"),
        ([*train, "--val-fraction", "1.5"], USAGE, "--val-fraction"),
        ([*train, "--val-fraction", "nan"], USAGE, "val_fraction"),
        ([*train, "--test-fraction", "0.6", "--val-fraction", "0.6"], USAGE, "fraction"),
        ([*train, "--encoding", "klingon"], USAGE, "unknown encoding"),
        ([*train, "--encoding", "rot13"], USAGE, "not a text encoding"),
        ([*train, "--encoding", "base64"], USAGE, "not a text encoding"),
        ([*train, "--text-column", "name"], USAGE, "columns of --labels table"),
        ([*train, "--model", "transformer"], USAGE, "--model"),
        ([*train, "--impl", "fortran"], USAGE, "--impl"),
        ([*train, "--iterator", "zigzag"], USAGE, "--iterator"),
        ([*train, "--optimizer", "lion"], USAGE, "--optimizer"),
        ([*train, "--device", "tpu"], USAGE, "--device"),
        ([*train, "--threads", "0"], USAGE, "--threads"),
        ([*train, "--tie-weights", "--embed", "4"], USAGE, "--embed must equal --hidden"),
        ([*train, "--hidden", "9", "--nonlinearity", "relu"], USAGE, "--model rnn only"),
        ([*train, "--tokenizer", "nope"], USAGE, "no tokenizer named 'nope'"),
        ([*train, "--tokenizer-option", "novalue"], USAGE, "KEY=VALUE"),
        ([*train, "--tokenizer-option", "nope=1"], USAGE, "no option 'nope'"),
        ([*train, "--tokenizer", "bpe", "--tokenizer-option", "vocab_size=x"], USAGE, "int"),
        (
            [*train, "--tokenizer", "char", "--tokenizer-option", "lowercase=maybe"],
            USAGE,
            "true or false",
        ),
        ([*train, "--tokenizer", "hf"], USAGE, "needs the option path"),
        # tokenizer option values out of range: usage errors, found before any book is read
        *[
            ([*train, "--tokenizer", name, "--tokenizer-option", option], USAGE, fragment)
            for name, option, fragment in [
                ("byte", "vocab_size=500", "no option 'vocab_size' (it takes none)"),
                ("char", "min_freq=0", "min_freq=0 must be at least 1"),
                ("char", "min_freq=-3", "min_freq=-3 must be at least 1"),
                ("word", "max_vocab=-1", "max_vocab=-1 must be at least 0"),
                ("word", "split=chars", "split='chars' must be one of words, spaces"),
                ("bpe", "vocab_size=0", "vocab_size=0 must be at least 1"),
                ("wordpiece", "vocab_size=0", "vocab_size=0 must be at least 1"),
                ("unigram", "vocab_size=0", "vocab_size=0 must be at least 1"),
                ("hf", "path=", "needs the option path"),
            ]
        ],
        (["train", missing, *FAST, "--tokenizer-option", "min_freq=0"], USAGE, "min_freq=0"),
        *[
            ([*train, "--tokenizer", "hf", "--tokenizer-option", f"path={path}"], RUNTIME, fragment)
            for path, fragment in [
                (missing, "No such file"),
                (p / "adir", "not a file"),
                (p / "empty.txt", "not a usable"),
                (p / "image.png", "not a usable"),
                (p / "huge-tokenizer.json", "more than charlm accepts"),
                (p / "bad-tokenizer.json", "not a usable"),
                (p / "far-ids.json", "more than charlm accepts"),
                ("/dev/zero", "not a file"),
            ]
        ],
        ([*train, "--precision", "fp16"], RUNTIME, "CUDA"),
        # generate
        (["generate", missing], RUNTIME, "does not exist"),
        (["generate", p / "adir"], RUNTIME, "no config.json"),
        (["generate", p / "empty.txt"], RUNTIME, "not a checkpoint directory"),
        (["generate", p / "broken"], RUNTIME, "not valid JSON"),
        (["generate", odd], RUNTIME, "\\n"),
        (["generate", not_utf8], RUNTIME, "does not exist"),
        ([*gen, "--prefix", "Zebra"], RUNTIME, "'Z'"),
        ([*gen, "--prefix", "caf\udce9"], USAGE, "not valid UTF-8"),
        ([*gen, "--stop", "\udcff"], USAGE, "not valid UTF-8"),
        ([*gen, "--length", "-5"], USAGE, "--length"),
        ([*gen, "--length", "lots"], USAGE, "--length"),
        ([*gen, "--temperature", "-1"], USAGE, "--temperature"),
        ([*gen, "--temperature", "nan"], USAGE, "temperature"),
        ([*gen, "--temperature", "inf"], USAGE, "temperature"),
        ([*gen, "--top-k", "0"], USAGE, "--top-k"),
        ([*gen, "--top-p", "0"], USAGE, "--top-p"),
        ([*gen, "--top-p", "nan"], USAGE, "top_p"),
        ([*gen, "--repetition-penalty", "nan"], USAGE, "repetition_penalty"),
        ([*gen, "--num-samples", "0"], USAGE, "--num-samples"),
        ([*gen, "--beam-width", "0"], USAGE, "--beam-width"),
        ([*gen, "--beam-width", "2", "--num-samples", "3"], USAGE, "at most"),
        ([*gen, "--beam-width", "2", "--top-k", "3"], USAGE, "beam search"),
        ([*gen, "--stop", ""], USAGE, "non-empty"),
        ([*gen, "--seed", "-1"], USAGE, "--seed"),
        ([*gen, "--seed", str(2**63)], USAGE, "seed"),
        ([*gen, "--unknown", "ignore"], USAGE, "--unknown"),
        ([*gen, "--threads", "0"], USAGE, "--threads"),
        (["evaluate", ck, book, "--threads", "0"], USAGE, "--threads"),
        ([*gen, "--unknown", "unk"], USAGE, "no <unk> token; use --unknown skip"),
        (["evaluate", ck, book, "--unknown", "unk"], USAGE, "no <unk> token; use --unknown skip"),
        (["classify", "--models", ck, ck, "--file", book, "--unknown", "unk"], USAGE, "no <unk>"),
        ([*gen, "--impl", "fortran"], USAGE, "--impl"),
        ([*gen, "--device", "tpu"], USAGE, "--device"),
        ([*gen, "--prefix", "a", "--prefix-file", book], USAGE, "not both"),
        ([*gen, "--prefix-file", missing], RUNTIME, "no such file"),
        ([*gen, "--prefix-file", p / "adir"], USAGE, "directory"),
        ([*gen, "--prefix-file", p / "image.png"], RUNTIME, "binary"),
        ([*gen, "--prefix-file", p / "empty.txt"], RUNTIME, "empty"),
        ([*gen, "--prefix-file", "/dev/zero"], RUNTIME, "is a device"),
        ([*gen, "--interactive", "--prefix", "x"], USAGE, "--interactive"),
        # evaluate
        (["evaluate"], USAGE, "Missing argument"),
        (["evaluate", ck], USAGE, "missing FILE"),
        (["evaluate", missing, book], RUNTIME, "does not exist"),
        (["evaluate", p / "broken", book], RUNTIME, "not valid JSON"),
        (["evaluate", ck, missing], RUNTIME, "no such file"),
        (["evaluate", ck, p / "adir"], RUNTIME, "directory"),
        (["evaluate", ck, p / "empty.txt"], RUNTIME, "empty"),
        (["evaluate", ck, p / "image.png"], RUNTIME, "binary"),
        (["evaluate", ck, odd], RUNTIME, "\\n"),
        (["evaluate", ck, p / "zebra.txt"], RUNTIME, "'Z'"),
        (["evaluate", ck, book, "--device", "tpu"], USAGE, "--device"),
        # empty paths name nothing (they would read or write the current directory)
        (["train", "", *FAST], USAGE, "is empty"),
        ([*train, "--out", ""], USAGE, "is empty"),
        (["generate", ""], USAGE, "is empty"),
        ([*gen, "--prefix-file", ""], USAGE, "is empty"),
        (["evaluate", ck, ""], USAGE, "is empty"),
        (["evaluate", ck, book, "--plot", ""], USAGE, "is empty"),
        (["plot", ""], USAGE, "is empty"),
        (["classify", ck, "--file", ""], USAGE, "is empty"),
        (["classify", ck, "a", "  "], USAGE, "a TEXT argument is empty"),
        ([*train, "--pooling", "max"], USAGE, "--pooling is for --task classify"),
        ([*train, "--class-weights", "balanced"], USAGE, "--class-weights is for --task classify"),
        ([*train, "--no-keep-lm"], USAGE, "--no-keep-lm is for --task classify"),
        (
            [
                *train,
                "--labels",
                "files",
                "--examples",
                "lines",
                "--task",
                "classify",
                "--ngram",
                "3",
            ],
            USAGE,
            "leave it out with --task classify",
        ),
        # int8 runs on the CPU: another device with it is a combination that cannot work
        *[
            ([command, ck, *more, "--quantize", "int8", "--device", "cuda"], USAGE, "CPU only")
            for command, more in (("generate", []), ("evaluate", [book]), ("classify", ["x"]))
        ],
        # corpus
        (["corpus", "list", "--dir", p / "image.png"], USAGE, "--dir"),
        (["corpus", "list", "extra"], USAGE, "unexpected extra argument"),
        (["corpus", "fetch"], USAGE, "Missing argument"),
        (["corpus", "fetch", "no-such-book"], USAGE, "no book named"),
        (["corpus", "fetch", catalogue_name, "--dir", p / "fetched"], RUNTIME, catalogue_name),
        (["corpus", "fetch", catalogue_name, "--dir", p / "image.png"], USAGE, "--dir"),
        (["corpus", "nosuch"], USAGE, "No such command"),
        # tokenizers
        (["tokenizers", "--bogus"], USAGE, "No such option"),
        (["tokenizers", "extra"], USAGE, "unexpected extra argument"),
        # plot
        (["plot"], RUNTIME, "none found under ./checkpoints"),
        (["plot", missing], RUNTIME, "does not exist"),
        (["plot", p / "adir"], RUNTIME, "no metrics.jsonl"),
        (["plot", p / "empty.txt"], RUNTIME, "no records"),
        (["plot", p / "image.png"], RUNTIME, "no records"),
        (["plot", p / "metrics-binary"], RUNTIME, "no records"),
        (["plot", p / "metrics-odd"], RUNTIME, "no records"),
        (["plot", ck, "--out", p / "dir.png"], RUNTIME, "Is a directory"),
        (["plot", ck, "--out", p / "image.png" / "x.png"], RUNTIME, "File exists"),
        (["plot", ck, "--out", p / "curves.docx"], RUNTIME, "cannot write a .docx"),
        (["evaluate", ck, book, "--plot", p / "matrix.docx"], USAGE, "cannot write a .docx"),
        (["evaluate", ck, book, "--plot", p / "matrix.png"], USAGE, "has no labels"),
        (["plot", ck, "--x", "epoch"], USAGE, "--x"),
    ]
    if not torch.cuda.is_available():
        cases.append(([*train, "--device", "cuda"], RUNTIME, "no CUDA GPU"))
    return cases


@pytest.mark.slow
def test_every_command_fails_cleanly_on_bad_input(place, monkeypatch):
    monkeypatch.setenv("CHARLM_CORPUS_MIRROR", str(place / "adir"))  # never the network
    monkeypatch.chdir(place)  # a default checkpoints/ directory goes there, not into the repo
    catalogue_name = next(iter(load_catalog()))
    failures = []
    cases = matrix(place, place / "book.txt", place / "ck", catalogue_name)
    for args, code, fragment in cases:
        result = CliRunner().invoke(cli, [str(a) for a in args])
        problem = _problem(result, code, fragment)
        if problem:
            failures.append(f"{args}: {problem}")
    assert not failures, "\n".join(failures)
    assert len(cases) > 120


def _problem(result, code: int, fragment: str | None) -> str | None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"raised {type(result.exception).__name__}: {result.exception}"
    if result.exit_code != code:
        return f"exit {result.exit_code}, expected {code}: {result.output!r}"
    if "Traceback" in result.output:
        return "a traceback"
    if code == 0:
        return None
    lines = result.stderr.splitlines()
    if len(lines) != 1 or not lines[0].startswith("Error: "):
        return f"stderr is not one 'Error:' line: {result.stderr!r}"
    if fragment not in lines[0]:
        return f"{fragment!r} not in {lines[0]!r}"
    if result.stdout:
        return f"stdout is not empty: {result.stdout!r}"
    return None


def test_one_line_escapes_breaks_controls_and_surrogates():
    assert one_line("a\nb\tc\x00d\udcffe\u2028f ü 😀") == "a\\nb\\tc\\x00d\\udcffe\\u2028f ü 😀"


@pytest.mark.slow
def test_the_real_entry_point_prints_no_traceback(place):
    # Through `python -m charlm`, with arguments that are not valid UTF-8 as a shell passes them.
    for args, code in [
        ([b"generate", os.fsencode(place / "ck"), b"--prefix", b"\xff\xfe"], USAGE),
        ([b"train", b"caf\xe9.txt", b"--hidden", b"0"], USAGE),
        ([b"evaluate", os.fsencode(place / "ck"), b"\xff.txt"], RUNTIME),
    ]:
        result = subprocess.run(
            [os.fsencode(sys.executable), b"-m", b"charlm", *args], capture_output=True
        )
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == code, stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.slow
def test_a_reader_that_stops_early_ends_generate_quietly(place):
    # `charlm generate | head`: the reader closes the pipe, and charlm stops without a word.
    command = [sys.executable, "-m", "charlm", "generate", str(place / "ck"), "--length", "200000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.read(20)
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1  # Click's status for it
    assert stderr.decode("utf-8", "replace") == ""
