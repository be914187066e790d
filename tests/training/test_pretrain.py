"""A new classifier first learns to read its own examples: language models that start it."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

import charlm
from charlm.checkpoint import read_config
from charlm.cli import cli
from charlm.data import DataOptions
from charlm.errors import ConfigError, StoppedError
from charlm.models import is_classifier
from charlm.options import example_defaults
from charlm.training import TrainConfig, train_book
from charlm.training.config import SMALL_VOCABULARY
from charlm.training.distributed import DistContext
from charlm.training.inputs import prepare_inputs
from charlm.training.pretrain import (
    DEFAULT_EPOCHS,
    TIME_SHARE,
    PretrainedEncoder,
    classifier_training,
    language_model_training,
    pretrain_encoder,
    pretrain_epochs,
)
from charlm.training.signals import StopFlag
from tests.conftest import SHARED_CORPORA
from tests.helpers import Messages, single_thread, write_labelled_names

TINY = {"hidden_size": 16, "embed_size": 8, "num_layers": 1, "dropout": 0.0}
LABELLED = DataOptions(labels="files", examples="lines", val_fraction=0.1, test_fraction=0.1)


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():
        yield


def classify(names, out, *, reporter=None, model=None, **training):
    return train_book(
        names, out=out, model={**TINY, "task": "classify", **(model or {})},
        training=TrainConfig(batch_size=8, lr=0.02, seed=1, **training), data=LABELLED,
        device="cpu", reporter=reporter,
    )  # fmt: skip


def test_by_default_an_alphabet_pretrains_and_a_large_vocabulary_does_not():
    assert pretrain_epochs(TrainConfig(), SMALL_VOCABULARY) == DEFAULT_EPOCHS  # names: 86
    assert pretrain_epochs(TrainConfig(), SMALL_VOCABULARY + 1) == 0  # words, Chinese
    assert pretrain_epochs(TrainConfig(pretrain_epochs=3), 20_000) == 3
    assert pretrain_epochs(TrainConfig(pretrain_epochs=0), 50) == 0
    with pytest.raises(ConfigError, match="pretrain_epochs must be at least 0"):
        TrainConfig(pretrain_epochs=-1)


def test_the_encoder_is_copied_from_language_models_of_the_training_examples(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    inputs = prepare_inputs(names, LABELLED, None, "char", None, TrainConfig(), print,
                            task="classify")  # fmt: skip
    model = {**TINY, "task": "classify", "bidirectional": True}
    reporter = Messages()
    torch.manual_seed(0)
    pretrained = pretrain_encoder(
        inputs, model, TrainConfig(batch_size=8, lr=0.02), 15, device=torch.device("cpu"),
        reporter=reporter, stop=None, dist=DistContext(),
    )  # fmt: skip
    forward, backward = pretrained.forward, pretrained.backward
    # The forward model learns the labels too (it is kept, --keep-lm); the backward does not.
    assert pretrained.kept and not is_classifier(forward) and forward.config.num_labels == 2
    assert backward.config.num_labels == 0
    assert (
        pretrained.summary["forward"]["epochs"] == 30 and pretrained.summary["forward"]["labelled"]
    )
    # Each learned its direction: far below the perplexity of a uniform guess.
    for direction in ("forward", "backward"):
        assert pretrained.summary[direction]["val_perplexity"] < inputs.tokenizer.vocab_size / 2
    assert any("a backward language model of the" in line for line in reporter.lines)
    classifier = inputs.classifier_from(model, forward, backward)
    rnn, lm = classifier.rnn, forward.rnn
    torch.testing.assert_close(classifier.embedding.weight, forward.embedding.weight)
    torch.testing.assert_close(rnn.weight_hh_l0, lm.weight_hh_l0)
    torch.testing.assert_close(rnn.weight_hh_l0_reverse, backward.rnn.weight_hh_l0)
    # The classifier reads no label: it takes the first layer's weights on the tokens alone.
    torch.testing.assert_close(rnn.weight_ih_l0, lm.weight_ih_l0[:, : model["embed_size"]])


def test_without_keep_lm_the_forward_model_does_not_learn_the_labels(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    inputs = prepare_inputs(names, LABELLED, None, "char", None, TrainConfig(), print,
                            task="classify")  # fmt: skip
    pretrained = pretrain_encoder(
        inputs, {**TINY, "task": "classify"}, TrainConfig(batch_size=8, keep_lm=False), 1,
        device=torch.device("cpu"), reporter=Messages(), stop=None, dist=DistContext(),
    )  # fmt: skip
    assert not pretrained.kept and pretrained.backward is None
    assert pretrained.forward.config.num_labels == 0
    forward = pretrained.summary["forward"]
    assert (forward["epochs"], forward["labelled"]) == (1, False)  # not twice: not kept


def test_a_classifier_of_names_pretrains_then_fine_tunes_within_its_time(tmp_path):
    names = write_labelled_names(tmp_path / "names", copies=2)
    reporter = Messages()
    run = classify(names, tmp_path / "model", reporter=reporter, pretrain_epochs=2,
                   max_steps=30, epochs=5)  # fmt: skip
    saved = read_config(run.checkpoint)
    found = saved["data"]["pretrained"]
    assert found["epochs"] == 2 and set(found) == {"epochs", "forward", "backward"}
    assert all(found[d]["steps"] > 0 and math.isfinite(found[d]["val_perplexity"])
               for d in ("forward", "backward"))  # fmt: skip
    assert saved["model"]["bidirectional"] is True  # the default for every classifier
    said = "\n".join(reporter.lines)
    assert (
        "a forward language model of the 108 training examples and their labels, 4 epochs" in said
    )
    assert "a backward language model of the 108 training examples, 2 epochs" in said
    assert "the classifier starts from them and fine-tunes" in said
    assert "examples (the classifier with its language model)" in said
    sampler = charlm.load(run.checkpoint, device="cpu")
    assert [c.label for c in sampler.classify(["Abba", "Xyzzy"], top_k=1)] == ["ab", "xyz"]
    # The forward model is kept, a labelled LM of its own in the run and in its best copy.
    assert saved["classifier"]["generative"] == "generative"
    for directory in (run.checkpoint, run.checkpoint / "best"):
        assert read_config(directory / "generative")["labels"] == saved["labels"]
    assert sampler.generative is not None and sampler.generative.labels == ["ab", "xyz"]
    # A resumed run does not pretrain again, and fine-tunes as it did (ULMFiT's rates).
    more = Messages()
    train_book(resume=run.checkpoint, device="cpu", reporter=more,
               training=TrainConfig.from_dict({**saved["training"], "max_steps": 40}))  # fmt: skip
    assert not any("pretraining" in line for line in more.lines)
    resumed = read_config(run.checkpoint)
    assert resumed["results"]["steps"] == 40
    assert resumed["classifier"] == saved["classifier"]  # the saved run's task, kept
    assert resumed["data"]["pretrained"] == saved["data"]["pretrained"]
    for directory in (run.checkpoint, run.checkpoint / "best"):  # the kept LM, still there
        assert charlm.load(directory, device="cpu").generative is not None
    # ... and so does a second part, which knows it fine-tunes from the record.
    longer = TrainConfig.from_dict({**resumed["training"], "max_steps": 45})
    train_book(resume=run.checkpoint, device="cpu", reporter=Messages(), training=longer)
    assert read_config(run.checkpoint)["results"]["steps"] == 45


def test_the_language_models_share_the_time_and_the_classifier_takes_the_rest():
    training = TrainConfig(max_time=100.0, max_steps=50, seed=7)
    lm = language_model_training(training, 4)
    assert (lm.epochs, lm.max_time, lm.max_steps, lm.seed) == (4, 100 * TIME_SHARE, 50, 7)
    assert language_model_training(TrainConfig(), 4).max_time is None
    kept = language_model_training(training, 4, kept=True)  # the labelled LM it keeps
    assert (kept.epochs, kept.max_time) == (8, pytest.approx(100 / 3))
    spent = PretrainedEncoder(None, None, train_seconds=31.5, summary={})  # type: ignore[arg-type]
    assert classifier_training(training, spent).max_time == pytest.approx(68.5)
    assert classifier_training(TrainConfig(), spent).max_time is None


def test_a_stop_while_pretraining_saves_nothing_and_says_so(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    stop = StopFlag()
    stop.request("interrupted")
    with pytest.raises(StoppedError, match="interrupted while pretraining the forward") as err:
        train_book(
            names, out=tmp_path / "model", model={**TINY, "task": "classify"}, data=LABELLED,
            training=TrainConfig(batch_size=8, pretrain_epochs=2), device="cpu", stop=stop,
        )  # fmt: skip
    assert not (tmp_path / "model" / "config.json").exists()
    assert err.value.exit_code == 130  # what the command exits with: a stop, not a failure


@pytest.mark.parametrize(
    ("model", "init", "match"),
    [
        ({"task": "lm"}, False, "--pretrain-epochs is for --task classify"),
        ({"task": "classify"}, True, "--init-from starts the classifier from its own"),
    ],
)
def test_pretraining_where_it_cannot_be_is_refused(tmp_path, model, init, match):
    names = write_labelled_names(tmp_path / "names")
    with pytest.raises(ConfigError, match=match):
        train_book(
            names, out=tmp_path / "model", model={**TINY, **model}, data=LABELLED,
            training=TrainConfig(pretrain_epochs=2), device="cpu",
            init_from=tmp_path / "lm" if init else None,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("model", "training", "match"),
    [
        ({}, {"lr_decay_per_layer": 2.0}, "--lr-decay-per-layer is for the layers a language"),
        ({}, {"gradual_unfreeze": False}, "--no-gradual-unfreeze is for the layers a language"),
        ({"label_input": "token"}, {}, "--label-input is for the labelled language model"),
    ],
)
def test_a_classifier_of_words_refuses_what_only_pretraining_would_use(
    tmp_path, model, training, match
):
    # More distinct words than a small vocabulary holds: such a classifier does not pretrain,
    # which only the vocabulary says, once the examples are read.
    for label, offset in (("even", 0), ("odd", 1)):
        words = [f"w{2 * i + offset}" for i in range(SMALL_VOCABULARY // 2 + 10)]
        (tmp_path / "words").mkdir(exist_ok=True)
        (tmp_path / "words" / f"{label}.txt").write_text("\n".join(words) + "\n")
    with pytest.raises(ConfigError, match=f"{match}.*does not pretrain unless --pretrain-epochs"):
        train_book(
            tmp_path / "words", out=tmp_path / "model", tokenizer="word",
            model={**TINY, "task": "classify", **model}, data=LABELLED,
            training=TrainConfig(max_steps=1, **training), device="cpu",
        )  # fmt: skip
    assert not (tmp_path / "model").exists()


def test_a_classifier_of_one_label_is_refused_before_any_pretraining(tmp_path):
    names = write_labelled_names(tmp_path / "names")
    (names / "xyz.txt").unlink()
    messages = Messages()
    with pytest.raises(ConfigError, match="at least two labels \\(--labels\\); found ab"):
        train_book(
            names, out=tmp_path / "model", model={**TINY, "task": "classify"}, data=LABELLED,
            training={"pretrain_epochs": 2}, device="cpu", reporter=messages,
        )  # fmt: skip
    assert not any("pretraining" in line for line in messages.lines)


def test_a_dict_of_training_settings_keeps_the_defaults_for_examples(tmp_path):
    # As `charlm train --max-steps 1` does: what the dict leaves out takes the classifier's
    # defaults for examples, not the defaults for books.
    names = write_labelled_names(tmp_path / "names")
    trained = train_book(
        names, out=tmp_path / "model", model={**TINY, "task": "classify"}, data=LABELLED,
        training={"max_steps": 1, "pretrain_epochs": 0}, device="cpu",
    )  # fmt: skip
    saved = read_config(trained.checkpoint)["training"]
    expected = example_defaults(TrainConfig, "classify")
    assert expected and {key: saved[key] for key in expected} == expected
    assert saved["max_steps"] == 1


@pytest.mark.slow
def test_the_names_classifier_of_the_defaults_pretrains_on_the_real_names(tmp_path):
    names = SHARED_CORPORA / "names"
    if not names.is_dir():
        pytest.skip(f"needs the shared corpora: {names} is absent")
    args = ["train", names, "--labels", "files", "--examples", "lines", "--task", "classify",
            "--max-time", "20s", "--out", tmp_path / "names", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    saved = read_config(tmp_path / "names")
    # An alphabet of 87 characters: both language models, the kept forward one of the names
    # and their labels within a third of 20 s, the backward one within a fifth.
    pretrained = saved["data"]["pretrained"]
    assert 0 < pretrained["forward"]["train_seconds"] <= 7.5 and pretrained["forward"]["labelled"]
    assert 0 < pretrained["backward"]["train_seconds"] <= 4.8
    assert saved["model"]["bidirectional"] is True
    assert saved["training"]["max_time"] < 20
    # Always answering Russian, the largest label, is right about half of the time; the
    # classifier alone, in the 9 s left, gets more right.
    assert saved["results"]["best_val_accuracy"] > 0.6
    sampler = charlm.load(tmp_path / "names" / "best", device="cpu")
    assert sampler.generative is not None and len(sampler.generative.labels) == 18


@pytest.mark.slow
def test_a_run_stopped_while_its_lower_layers_are_frozen_resumes(tmp_path):
    # Gradual unfreezing holds the embedding and recurrent layers at rate 0 in the first
    # epoch: a checkpoint saved then must resume (its zero rates are no damage).
    names = write_labelled_names(tmp_path / "names")
    run = classify(names, tmp_path / "run", pretrain_epochs=1, max_steps=2, epochs=5)
    rates = read_config(run.checkpoint)["training_state"]["optimizer"]["param_groups"]
    assert rates[0]["lr"] == 0.0 and rates[-1]["lr"] > 0  # stopped while frozen
    resumed = train_book(resume=run.checkpoint, training={"max_steps": 4}, device="cpu")
    assert resumed.result.steps == 4
