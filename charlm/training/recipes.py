"""Recipes: named sets of training options, stored as data in recipes.toml.

    charlm train book.txt --recipe word --epochs 10     # the word recipe, but 10 epochs

A recipe names options of `charlm train` by their flags without the dashes (`hidden = 200`,
`tie-weights = true`), so it reads like the command line it stands for. `Recipe.arguments()`
turns it into the keywords of `charlm.train_book`, which is how Python code uses one.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from charlm.data import DataOptions
from charlm.errors import ConfigError
from charlm.models import ModelConfig
from charlm.options import example_defaults, flag_name, option_fields
from charlm.training.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

RECIPES_FILE = "recipes.toml"
# The arguments of `train_book` a recipe may set besides the config fields.
TOKENIZER_KEYS = {"tokenizer": "tokenizer", "tokenizer-option": "tokenizer_options"}
_SECTIONS = {"data": DataOptions, "model": ModelConfig, "training": TrainConfig}


@dataclass(frozen=True)
class Recipe:
    """A named set of `charlm train` options (by flag name without dashes) and what it is for."""

    name: str
    description: str
    options: dict[str, Any]

    def arguments(self) -> dict[str, Any]:
        """The keywords of `charlm.train_book` the recipe sets: tokenizer, tokenizer_options,
        model (a dict of ModelConfig fields), training (a TrainConfig), data (DataOptions)."""
        sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        arguments: dict[str, Any] = {}
        for key, value in self.options.items():
            if key in TOKENIZER_KEYS:
                arguments[TOKENIZER_KEYS[key]] = value
                continue
            section, field, spec = _config_flags()[key]
            if spec.parse is not None and isinstance(value, str):
                value = spec.parse(value)
            sections[section][field] = (not value) if spec.inverted else value
        data = DataOptions(**sections["data"])
        training = sections["training"]
        if data.example_unit is not None:  # as on the command line: examples' own defaults
            training = {**example_defaults(TrainConfig), **training}
        return {
            **arguments,
            "model": sections["model"],
            "training": TrainConfig(**training),
            "data": data,
        }

    def command_line(self) -> str:
        """The options as they would be typed: --hidden 200 --tie-weights ..."""
        words = []
        for key, value in self.options.items():
            if isinstance(value, dict):  # tokenizer-option = {split = "spaces"}
                words += [f"--{key} {k}={v}" for k, v in value.items()]
            elif value is True:
                words.append(f"--{key}")
            elif value is False and _config_flags()[key][2].negatable:
                words.append(f"--no-{key}")
            elif value is not False:  # false for a plain flag is its default: nothing to type
                words.append(f"--{key} {value}")
        return " ".join(words)


@cache
def recipes() -> dict[str, Recipe]:
    """Every recipe in the package, by name, in the order of recipes.toml."""
    text = resources.files("charlm.training").joinpath(RECIPES_FILE).read_text(encoding="utf-8")
    return {name: _recipe(name, table) for name, table in tomllib.loads(text).items()}


def recipe(name: str) -> Recipe:
    """The recipe called `name`; ConfigError (naming the close ones) if there is none."""
    found = recipes().get(name.lower())
    if found is None:
        close = difflib.get_close_matches(name.lower(), list(recipes()), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"no recipe named {name!r}; {hint}the recipes are {', '.join(recipes())}")
    return found


def _recipe(name: str, table: dict[str, Any]) -> Recipe:
    options = dict(table)
    description = options.pop("description", "")
    unknown = sorted(set(options) - set(_config_flags()) - set(TOKENIZER_KEYS))
    if unknown:
        raise ConfigError(f"recipe {name!r} sets unknown options: {', '.join(unknown)}")
    return Recipe(name, description, options)


@cache
def _config_flags() -> dict[str, tuple[str, str, Any]]:
    """flag without dashes → (section of train_book, config field, its Option)."""
    flags = {}
    for section, config in _SECTIONS.items():
        for field, spec in option_fields(config):
            flags[flag_name(field, spec)[2:]] = (section, field.name, spec)
    return flags
