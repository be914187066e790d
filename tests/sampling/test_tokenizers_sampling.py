"""Tokenizers where users meet them: prompts with unknown pieces, sampling, the CLI, PTB."""

from __future__ import annotations

import re

import pytest
import torch
from click.testing import CliRunner

from charlm import TrainConfig, load, train_book
from charlm.cli import cli
from charlm.errors import UnknownTokenError
from charlm.models import ModelConfig, build_model
from charlm.sampling import Sampler
from charlm.tokenizers import train_tokenizer
from charlm.training.run import DataOptions
from tests.conftest import shared_corpus

TINY = {"cell": "lstm", "embed_size": 8, "hidden_size": 16, "num_layers": 1}
TINY_TRAINING = TrainConfig(batch_size=2, seq_len=8, max_steps=2)


def sampler_for(tokenizer) -> Sampler:
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, **TINY))
    return Sampler(model, tokenizer)


@pytest.mark.slow
def test_word_sampling_never_draws_unk_unless_allowed():
    tokenizer = train_tokenizer("word", "the cat sat on the mat .\n")
    sampler = sampler_for(tokenizer)
    with torch.no_grad():
        sampler.model.head.bias[tokenizer.unk_id] = 50.0  # the model all but insists on <unk>
    text = sampler.generate("the", length=40, temperature=1.0, seed=0)
    assert "<unk>" not in text and len(text.split()) > 10
    assert "<unk>" not in sampler.generate("the", length=10, temperature=0, seed=0)
    assert "<unk>" in sampler.generate("the", length=10, temperature=1.0, seed=0, allow_unk=True)


def test_prompt_policy_decides_what_happens_to_unknown_characters():
    sampler = sampler_for(train_tokenizer("char", "abc abc"))
    with pytest.raises(UnknownTokenError, match="'z'"):
        sampler.generate("abz", length=3, seed=0)
    assert sampler.generate("abz", length=3, seed=0, unknown="skip").startswith("abz")
    with pytest.raises(UnknownTokenError, match="no <unk>"):
        sampler.generate("abz", length=3, seed=0, unknown="unk")


def test_an_empty_prompt_works_without_a_newline_in_the_vocabulary():
    sampler = sampler_for(train_tokenizer("char", "abc abc"))
    assert len(sampler.generate("", length=5, seed=0)) == 5


@pytest.fixture(scope="module")
def word_checkpoint(tmp_path_factory):
    book = tmp_path_factory.mktemp("book") / "book.txt"
    book.write_text("the cat sat on the mat. the dog sat on the log.\n" * 40, encoding="utf-8")
    out = tmp_path_factory.mktemp("ck") / "word"
    train_book(
        book,
        out=out,
        tokenizer="word",
        tokenizer_options={"min_freq": "1"},
        model=TINY,
        training=TINY_TRAINING,
        data=DataOptions(val_fraction=0.1),
        device="cpu",
    )
    return out


@pytest.mark.slow
def test_generate_cli_applies_the_unknown_policy(word_checkpoint):
    runner = CliRunner()
    base = ["generate", str(word_checkpoint), "--length", "5", "--seed", "1", "--device", "cpu"]
    result = runner.invoke(cli, [*base, "--prefix", "the zebra", "--unknown", "error"])
    assert result.exit_code == 1 and "'zebra'" in result.output
    assert result.output.count("\n") == 1  # one line, no traceback
    result = runner.invoke(cli, [*base, "--prefix", "the zebra", "--unknown", "skip"])
    assert result.exit_code == 0 and result.stdout.startswith("the zebra")
    result = runner.invoke(cli, [*base, "--prefix", "the zebra"])  # default: <unk>
    assert result.exit_code == 0 and "<unk>" not in result.stdout[len("the zebra") :]


def test_word_checkpoint_reloads_its_vocabulary(word_checkpoint):
    text = load(word_checkpoint, device="cpu").generate("the dog", length=8, seed=3)
    # Whole words of the book only (an untrained model may glue them with <nospace>).
    assert re.fullmatch(r"the dog(the|cat|sat|on|mat|dog|log|\.|\s)+", text)


@pytest.mark.parametrize(
    ("option", "message"),
    [("vocab_size", "is not KEY=VALUE"), ("=3", "is not KEY=VALUE"), ("nope=1", "no option")],
)
def test_train_cli_rejects_bad_tokenizer_options_in_one_line(tiny_book, option, message):
    result = CliRunner().invoke(
        cli, ["train", str(tiny_book), "--tokenizer", "word", "--tokenizer-option", option]
    )
    assert result.exit_code in (1, 2)
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_train_cli_passes_tokenizer_options(tiny_book, tmp_path):
    out = tmp_path / "ck"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(tiny_book),
            "--tokenizer",
            "bpe",
            "--tokenizer-option",
            "vocab_size=280",
            "--hidden",
            "16",
            "--embed",
            "8",
            "--layers",
            "1",
            "--seq-len",
            "8",
            "--batch-size",
            "2",
            "--max-steps",
            "1",
            "--val-fraction",
            "0.2",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    sampler = load(out, device="cpu")
    assert sampler.tokenizer.name == "bpe" and sampler.tokenizer.vocab_size <= 280


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.slow
def test_word_level_lstm_on_penn_treebank(tmp_path):
    book = shared_corpus("ptb/ptb.train.txt")
    trained = train_book(
        book,
        out=tmp_path / "ptb",
        tokenizer="word",
        tokenizer_options={"split": "spaces"},
        model=TINY,
        training=TrainConfig(batch_size=4, seq_len=16, max_steps=3),
        data=DataOptions(val_fraction=0.02),
        device="cpu",
    )
    sampler = load(trained.checkpoint, device="cpu")
    # Penn Treebank's own 10,000: 9,998 words, <unk> and the line break (<eos>), + 2 markers.
    assert sampler.tokenizer.vocab_size == 10_002
    text = sampler.generate("the company", length=30, temperature=1.0, seed=0)
    assert text.startswith("the company ")
    assert "<unk>" not in text
    assert len(text.split()) >= 20  # words, not characters
