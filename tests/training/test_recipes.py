"""Recipes: named option sets stored as data, applied under the command line's own options."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.data import DataOptions
from charlm.errors import ConfigError
from charlm.models import ModelConfig
from charlm.options import example_defaults
from charlm.training import TrainConfig
from charlm.training.recipes import recipe, recipes
from charlm.training.run import check_settings
from tests.conftest import TINY_TEXT
from tests.helpers import write_labelled_names

SECTIONS = {"model": "model", "training": "training", "data": ("data", "options")}


def test_the_package_has_the_promised_recipes_and_each_makes_valid_settings():
    assert {"char", "word", "tiny"} <= set(recipes())
    for item in recipes().values():
        assert item.description, item.name
        arguments = item.arguments()
        check_settings(
            arguments["model"], arguments["data"], arguments.get("tokenizer", "char"), {}
        )
        ModelConfig(vocab_size=100, **arguments["model"])


def test_char_is_the_defaults_and_tiny_is_small_and_short():
    char = recipe("char").arguments()
    assert char["model"] == {} and char["training"] == TrainConfig()
    assert char["data"] == DataOptions() and "tokenizer" not in char
    tiny = recipe("tiny").arguments()
    assert tiny["model"]["num_layers"] == 1 and tiny["model"]["hidden_size"] <= 128
    assert tiny["training"].max_time <= 60


def test_word_is_the_recipe_the_benchmarks_measured():
    # docs/benchmarks.md reports PTB test perplexity 86.9 for the charlm-word benchmark
    # recipe; the package's word recipe must be the same settings.
    from benchmarks.ptb_zaremba import RECIPES

    measured = RECIPES["charlm-word"]
    word = recipe("word").arguments()
    assert word["tokenizer"] == measured.tokenizer == "word"
    assert {**ModelConfig(1).to_dict(), **word["model"]} == {
        **ModelConfig(1).to_dict(),
        **measured.model,
    }
    assert word["training"] == measured.training


def test_an_unknown_recipe_names_the_close_one():
    with pytest.raises(ConfigError, match="no recipe named 'wrod'; did you mean 'word'?"):
        recipe("wrod")
    result = CliRunner().invoke(cli, ["train", "book.txt", "--recipe", "wrod"])
    assert result.exit_code == 2 and "did you mean 'word'?" in result.output


def test_recipe_list_shows_each_recipe_and_its_options():
    result = CliRunner().invoke(cli, ["train", "--recipe", "list"])
    assert result.exit_code == 0, result.output
    for item in recipes().values():
        assert f"{item.name}: {item.description}" in result.output
    assert "--tokenizer word --layers 2 --hidden 200 --embed 200 --tie-weights" in result.output
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "char, word, tiny" in " ".join(help_text.split())


def test_options_given_on_the_command_line_win(tiny_book, monkeypatch):
    seen = {}

    def fake_train_book(books, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("charlm.cli.train.train_book", fake_train_book)
    args = ["train", str(tiny_book), "--recipe", "word", "--epochs", "3", "--no-tie-weights"]
    result = CliRunner().invoke(cli, args)
    assert "given here instead: --tie-weights, --epochs" in result.output
    word = recipe("word").arguments()
    assert seen["tokenizer"] == "word"
    assert seen["training"].epochs == 3 and seen["model"]["tie_weights"] is False
    assert seen["training"].lr == word["training"].lr == 20.0
    assert seen["model"]["hidden_size"] == 200
    result = CliRunner().invoke(cli, ["train", "--resume", str(tiny_book), "--recipe", "tiny"])
    assert result.exit_code == 2 and "drop --recipe" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(recipes()))
def test_each_recipe_round_trips_into_the_saved_config(name, tmp_path):
    if recipe(name).arguments()["data"].labels:
        book = write_labelled_names(tmp_path / "names", copies=2)
    else:
        book = tmp_path / "book.txt"
        book.write_text(TINY_TEXT * 4, encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", str(book), "--recipe", name, "--out", str(out), "--max-steps", "1"]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    expected = recipe(name).arguments()
    assert saved["tokenizer"]["name"] == expected.get("tokenizer", "char")
    assert {k: saved["model"][k] for k in expected["model"]} == expected["model"]
    training = {**asdict(expected["training"]), "max_steps": 1}  # given here: wins
    assert saved["training"] == training
    assert saved["data"]["options"] == asdict(expected["data"])
    if expected["data"].example_unit is not None:  # what the recipe left: examples' defaults
        assert {k: saved["model"][k] for k in example_defaults(ModelConfig)} == {
            k: v for k, v in example_defaults(ModelConfig).items() if k not in expected["model"]
        } | expected["model"]
