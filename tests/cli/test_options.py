"""Every option is defined once: each config field has its command-line option, same default."""

from __future__ import annotations

import dataclasses

import click
import pytest

from charlm.cli import cli
from charlm.cli.options import param_name
from charlm.data import DataOptions
from charlm.models import ModelConfig
from charlm.models.quantized import InferenceOptions
from charlm.options import example_defaults, flag_name, option_fields
from charlm.sampling import SamplingOptions
from charlm.training import TrainConfig
from charlm.training.run import with_example_defaults

# Fields that are deliberately not options of their command, and why.
NOT_OPTIONS = {
    (ModelConfig, "vocab_size"): "comes from the tokenizer once the books are read",
    (DataOptions, "corpus_dir"): "where catalogue books go; a setting of the caller",
    (ModelConfig, "end_token"): "set when the data is examples (--labels / --examples)",
    (ModelConfig, "num_labels"): "comes from the labels found in the data",
    (SamplingOptions, "allow_unk"): "drawing <unk> is for code that handles it",
}
CONFIGS = [DataOptions, ModelConfig, TrainConfig, SamplingOptions, InferenceOptions]
COMMANDS = {
    SamplingOptions: "generate",
    InferenceOptions: "generate",
}  # the command of each config; train by default


def _params(config: type) -> dict[str, click.Parameter]:
    return {
        p.name: p for p in cli.get_command(click.Context(cli), COMMANDS.get(config, "train")).params
    }


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_is_an_option_with_the_same_default(config):
    params = _params(config)
    described = {field.name for field, _ in option_fields(config)}
    for field in dataclasses.fields(config):
        if field.name not in described:
            assert (config, field.name) in NOT_OPTIONS, (
                f"{config.__name__}.{field.name} has no option"
            )
    for field, spec in option_fields(config):
        param = params.get(param_name(field, spec))
        assert param is not None, f"no option {flag_name(field, spec)} for {field.name}"
        assert flag_name(field, spec) in param.opts
        expected = (not field.default) if spec.inverted else field.default
        assert param.default == expected, field.name
        assert spec.help in (param.help or ""), field.name


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_the_defaults_make_a_valid_config(config):
    # A config built from nothing but its defaults must pass its own checks.
    if config is ModelConfig:
        config(vocab_size=10)
    else:
        config()


def test_the_options_parse_back_into_the_configs(tiny_book, tmp_path, monkeypatch):
    seen = {}

    def fake_train_book(books, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("charlm.cli.train.train_book", fake_train_book)
    from click.testing import CliRunner

    CliRunner().invoke(
        cli,
        ["train", str(tiny_book), "--hidden", "8", "--layers", "1", "--lr", "0.5",
         "--max-time", "2m", "--no-cache", "--val", str(tiny_book), "--cutoffs", "3,5",
         "--softmax", "adaptive"],
    )  # fmt: skip
    assert seen["model"]["hidden_size"] == 8 and seen["model"]["num_layers"] == 1
    assert seen["model"]["cutoffs"] == [3, 5]
    assert seen["training"].lr == 0.5 and seen["training"].max_time == 120
    assert seen["data"].use_cache is False and seen["data"].val_file == str(tiny_book)


def test_examples_take_their_own_defaults_unless_an_option_is_given(tmp_path, monkeypatch):
    seen = {}

    def fake_train_book(books, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("charlm.cli.train.train_book", fake_train_book)
    from click.testing import CliRunner

    CliRunner().invoke(cli, ["train", str(tmp_path), "--labels", "files", "--hidden", "100"])
    assert seen["model"] == {"hidden_size": 100, "task": "lm"}  # what was chosen, no more
    model = with_example_defaults(seen["model"], seen["data"])  # what train_book then builds
    assert model["hidden_size"] == 100  # given
    assert model["num_layers"] == 1 and model["output_dropout"] == 0.2
    assert seen["training"].batch_size == example_defaults(TrainConfig)["batch_size"]
    CliRunner().invoke(cli, ["train", str(tmp_path)])  # a book: the ordinary defaults
    assert seen["model"]["num_layers"] == 2 and seen["training"].batch_size == 32


@pytest.mark.parametrize("config", [ModelConfig, TrainConfig], ids=lambda c: c.__name__)
@pytest.mark.parametrize("kind", ["examples", "classify", "words"])
def test_the_example_defaults_make_a_valid_config(config, kind):
    defaults = example_defaults(config, "lm" if kind == "examples" else "classify", kind == "words")
    assert defaults
    if config is TrainConfig:
        config(**defaults)
    elif kind == "examples":
        config(vocab_size=10, **defaults)
    else:
        config(vocab_size=10, end_token=True, num_labels=2, task="classify", **defaults)


def test_a_classifier_takes_its_own_defaults_unless_an_option_is_given(tmp_path, monkeypatch):
    seen = {}

    def fake_train_book(books, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("charlm.cli.train.train_book", fake_train_book)
    from click.testing import CliRunner

    model, training = example_defaults(ModelConfig), example_defaults(TrainConfig)
    own_model = example_defaults(ModelConfig, "classify")
    own_training = example_defaults(TrainConfig, "classify")
    assert own_model != model or own_training != training  # a classifier has its own
    args = ["train", str(tmp_path), "--labels", "files", "--task", "classify"]
    CliRunner().invoke(cli, [*args, "--hidden", "100"])
    built = with_example_defaults(seen["model"], seen["data"])
    assert built["hidden_size"] == 100  # given
    for name, value in own_model.items():
        if name != "hidden_size":
            assert built[name] == value, name
    for name, value in own_training.items():
        assert getattr(seen["training"], name) == value, name
    # One that reads words has its own again; what is given still wins.
    words = example_defaults(ModelConfig, "classify", words=True)
    assert words != own_model
    built = with_example_defaults(seen["model"], seen["data"], words=True)
    assert built == {**words, "hidden_size": 100, "task": "classify"}
    CliRunner().invoke(cli, ["train", str(tmp_path), "--labels", "files"])  # a labelled LM
    built = with_example_defaults(seen["model"], seen["data"], words=True)
    for name, value in model.items():
        assert built[name] == value, name


@pytest.mark.parametrize("config", [ModelConfig, TrainConfig], ids=lambda c: c.__name__)
def test_the_classifier_defaults_make_a_valid_config(config):
    defaults = example_defaults(config, "classify")
    if config is ModelConfig:
        config(vocab_size=10, num_labels=2, end_token=True, task="classify", **defaults)
    else:
        config(**defaults)
