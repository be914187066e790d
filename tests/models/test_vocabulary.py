"""A trained model moved onto a new vocabulary: shared tokens keep their rows, new ones start
at the mean row, the recurrent layers are untouched; and `--init-from` with `--tokenizer`."""

from __future__ import annotations

import json

import pytest
import tokenizers as hf
import torch

import charlm
from charlm.data import DataOptions
from charlm.errors import ConfigError
from charlm.models import ModelConfig, build_model
from charlm.models.vocabulary import shared_tokens, with_vocabulary
from charlm.tokenizers.byte import ByteTokenizer
from charlm.tokenizers.char import CharTokenizer
from charlm.tokenizers.hf import HFTokenizer
from charlm.tokenizers.word import WordTokenizer
from charlm.training import TrainConfig, train_book
from tests.helpers import Messages, single_thread, write_labelled_names

OLD = CharTokenizer(list("abcdef"))
NEW = CharTokenizer(list("fxbaz"))  # f, b and a are shared; x and z are new


def lm(tokenizer=OLD, **settings) -> charlm.models.RNNLM:
    torch.manual_seed(0)
    shape = {"hidden_size": 8, "embed_size": 8, "num_layers": 2, **settings}
    return build_model(ModelConfig(tokenizer.vocab_size + settings.get("end_token", 0), **shape))


def test_shared_tokens_are_paired_by_their_text():
    new_ids, old_ids = shared_tokens(OLD, NEW)
    pairs = {NEW.decode([n]): OLD.decode([o]) for n, o in zip(new_ids, old_ids, strict=True)}
    assert pairs == {"f": "f", "b": "b", "a": "a"}


def test_markers_that_decode_to_nothing_are_shared_too():
    # MR's "the end ." spaces a full stop: its most frequent token after the words is the
    # <space> marker, which must keep WikiText's row, not start at the mean.
    old = WordTokenizer.train("the end . did n't", lowercase=True)
    new = WordTokenizer.train("The end . Didn't", lowercase=True)
    new_ids, old_ids = shared_tokens(old, new)
    named = {new.token_text(n): old.token_text(o) for n, o in zip(new_ids, old_ids, strict=True)}
    assert {"<unk>", "<space>", "<nospace>", "\n", "the", "end", "."} == set(named)
    assert all(a == b for a, b in named.items())


def byte_level_bpe(text: str) -> HFTokenizer:
    pipeline = hf.Tokenizer(hf.models.BPE())
    pipeline.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    pipeline.decoder = hf.decoders.ByteLevel()
    alphabet = hf.pre_tokenizers.ByteLevel.alphabet()
    trainer = hf.trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet, show_progress=False)
    pipeline.train_from_iterator([text], trainer)
    return HFTokenizer(pipeline)


@pytest.mark.parametrize("tokenizer", [ByteTokenizer(), byte_level_bpe("café naïve")])
def test_bytes_pair_one_to_one_though_half_of_them_alone_are_not_text(tokenizer):
    # A byte above 127 alone decodes to the replacement character: by their text alone,
    # 128 different bytes would all take one byte's rows.
    new_ids, old_ids = shared_tokens(tokenizer, tokenizer)
    assert new_ids == old_ids == list(range(tokenizer.vocab_size))


@pytest.mark.parametrize("settings", [{}, {"tie_weights": True}, {"end_token": True}])
def test_shared_tokens_keep_their_rows_and_new_ones_start_at_the_mean(settings):
    model = lm(**settings)
    moved = with_vocabulary(model, OLD, NEW)
    extra = int(settings.get("end_token", False))
    assert moved.config.vocab_size == NEW.vocab_size + extra
    new_ids, old_ids = shared_tokens(OLD, NEW)
    if extra:  # the end token is a row of its own, after the tokenizer's
        new_ids, old_ids = new_ids + [NEW.vocab_size], old_ids + [OLD.vocab_size]
    fresh = [i for i in range(moved.config.vocab_size) if i not in new_ids]
    for name in ("embedding.weight", "head.weight", "head.bias"):
        before, after = model.state_dict()[name], moved.state_dict()[name]
        torch.testing.assert_close(after[new_ids], before[old_ids])
        for row in fresh:
            torch.testing.assert_close(after[row], before.mean(dim=0))
    for name, tensor in model.state_dict().items():
        if name.startswith("rnn."):
            torch.testing.assert_close(moved.state_dict()[name], tensor)


def test_the_moved_model_scores_shared_tokens_as_before():
    model = lm().eval()
    moved = with_vocabulary(model, OLD, NEW).eval()
    text = "fbaab"
    before, _ = model(torch.as_tensor(OLD.encode_array(text)).unsqueeze(0))
    after, _ = moved(torch.as_tensor(NEW.encode_array(text)).unsqueeze(0))
    new_ids, old_ids = shared_tokens(OLD, NEW)
    torch.testing.assert_close(after[..., new_ids], before[..., old_ids])


@pytest.mark.parametrize("settings", [{"one_hot": True}, {"softmax": "adaptive", "cutoffs": [3]}])
def test_a_model_without_token_rows_to_carry_is_refused(settings):
    with pytest.raises(ConfigError, match="needs both"):
        with_vocabulary(lm(**settings), OLD, NEW)


@pytest.mark.slow
def test_init_from_with_a_tokenizer_trains_on_the_runs_own_vocabulary(tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("the cat sat on the mat . " * 60, encoding="utf-8")
    second.write_text("the dog sat on the rug . " * 60, encoding="utf-8")
    config = TrainConfig(batch_size=4, seq_len=8, max_steps=2)
    shape = {"hidden_size": 16, "embed_size": 16, "num_layers": 1}
    reporter = Messages()
    with single_thread():
        base = train_book(first, out=tmp_path / "lm", tokenizer="word", model=shape,
                          training=config, device="cpu")  # fmt: skip
        tuned = train_book(second, out=tmp_path / "ft", tokenizer="word", training=config,
                           device="cpu", init_from=base.checkpoint, reporter=reporter)  # fmt: skip
        kept = train_book(second, out=tmp_path / "kept", training=config, device="cpu",
                          init_from=base.checkpoint)  # fmt: skip
        # A text the LM's tokenizer cannot read: it says so.
        unreadable, told = tmp_path / "other.txt", Messages()
        unreadable.write_text("zebras yodel quietly\n" * 60, encoding="utf-8")
        train_book(unreadable, out=tmp_path / "zebras", training=config, device="cpu",
                   init_from=base.checkpoint, reporter=told)  # fmt: skip
        # Options alone train the LM's own kind of tokenizer anew (not characters).
        retrained = train_book(
            second,
            out=tmp_path / "opts",
            training=config,
            device="cpu",
            init_from=base.checkpoint,
            tokenizer_options={"min_freq": 1},
        )
    text = "the dog sat on the rug ."
    own, inherited = charlm.load(tuned.checkpoint), charlm.load(kept.checkpoint)
    assert charlm.load(retrained.checkpoint).tokenizer.name == "word"
    warned = [line for line in told.lines if line.startswith("warning:")]
    assert len(warned) == 1 and "of the training tokens are <unk>" in warned[0]
    assert not any(line.startswith("warning:") for line in reporter.lines)
    assert own.tokenizer.unk_id not in own.tokenizer.encode(text)  # its own words
    assert inherited.tokenizer.unk_id in inherited.tokenizer.encode(text)  # the LM's: no "dog"
    assert any("keep their rows from" in line for line in reporter.lines)
    saved = json.loads((tuned.checkpoint / "config.json").read_text())
    assert saved["data"]["init_from"] == str(base.checkpoint)


@pytest.mark.slow
def test_a_classifier_from_a_language_model_takes_its_own_vocabulary(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    book = tmp_path / "book.txt"
    book.write_text("Abba Baba Xyz " * 200, encoding="utf-8")
    shape = {"hidden_size": 16, "embed_size": 8, "num_layers": 1}
    with single_thread():
        base = train_book(book, out=tmp_path / "lm", model=shape, device="cpu",
                          training=TrainConfig(batch_size=4, seq_len=8, max_steps=2))  # fmt: skip
        run = train_book(
            names, out=tmp_path / "clf", tokenizer="char", model={"task": "classify"},
            data=DataOptions(labels="files", examples="lines", val_fraction=0.1),
            training=TrainConfig(batch_size=8, max_steps=3), device="cpu",
            init_from=base.checkpoint,
        )  # fmt: skip
    sampler = charlm.load(run.checkpoint, device="cpu")
    assert sampler.is_classifier
    vocabulary = sampler.tokenizer.decode(range(sampler.tokenizer.vocab_size))
    assert "Y" in vocabulary and " " not in vocabulary  # the names' characters, not the book's
