"""Click options derived from the config dataclasses (see charlm/options.py).

`config_options(TrainConfig)` adds one option per field, with the field's default, help and
limits; `config_values(TrainConfig, params)` collects the parsed values back by field name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from charlm.errors import ConfigError
from charlm.models.quantized import QUANTIZATIONS
from charlm.options import Option, flag_name, option_fields


class Parsed(click.ParamType):
    """A value read from text by the config's own parser (a duration, a list of ids)."""

    def __init__(self, parse: Callable[[str], Any], metavar: str) -> None:
        self.parse, self.name = parse, metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except (ConfigError, ValueError) as exc:
            self.fail(str(exc), param, ctx)


def config_options(config: type, *, exclude: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """A decorator adding an option for each option field of `config` (in field order)."""
    made = [
        _click_option(field, spec)
        for field, spec in option_fields(config)
        if field.name not in exclude
    ]

    def decorate(command: Any) -> Any:
        for make in reversed(made):
            command = make(command)
        return command

    return decorate


def config_values(config: type, params: dict[str, Any]) -> dict[str, Any]:
    """The values of `config`'s option fields among the parsed `params`, by field name."""
    values = {}
    for field, spec in option_fields(config):
        name = param_name(field, spec)
        if name in params:
            values[field.name] = not params[name] if spec.inverted else params[name]
    return values


def param_name(field: dataclasses.Field, spec: Option) -> str:
    """The keyword a command receives: the field's name, or the flag's for an inverted flag."""
    return flag_name(field, spec)[2:].replace("-", "_") if spec.inverted else field.name


def _click_option(field: dataclasses.Field, spec: Option) -> Callable[[Any], Any]:
    flag = flag_name(field, spec)
    settings: dict[str, Any] = {"help": spec.help, "show_default": True}
    if spec.inverted:
        return click.option(flag, param_name(field, spec), is_flag=True, default=False, **settings)
    if spec.negatable:
        flag = f"{flag}/--no-{flag[2:]}"
    elif _base_type(field) == "bool":
        settings["is_flag"] = True
    else:
        settings["type"] = _click_type(field, spec)
    if field.default is None and spec.shown_default is not None:
        # Click shows no default for None; say what None means, in Click's own format.
        settings["help"] = f"{spec.help}  [default: {spec.shown_default}]"
    if spec.metavar is not None and spec.parse is None:
        settings["metavar"] = spec.metavar
    return click.option(flag, field.name, default=field.default, **settings)


def _click_type(field: dataclasses.Field, spec: Option) -> click.ParamType:
    if spec.choices is not None:
        return click.Choice(list(spec.choices))
    if spec.parse is not None:
        return Parsed(spec.parse, spec.metavar or "TEXT")
    if spec.path is not None:
        return click.Path(dir_okay=spec.path != "file", file_okay=spec.path != "dir")
    limits = {"min": spec.low, "max": spec.high}
    if _base_type(field) == "int":
        return click.IntRange(**limits) if limits != {"min": None, "max": None} else click.INT
    if _base_type(field) == "float":
        open_ends = {"min_open": spec.low_open, "max_open": spec.high_open}
        return click.FloatRange(**limits, **open_ends)
    return click.STRING


def _base_type(field: dataclasses.Field) -> str:
    """ "int" for `int` or `int | None` (annotations are strings under postponed evaluation)."""
    annotation = field.type if isinstance(field.type, str) else field.type.__name__
    return annotation.split("|")[0].strip()


# How `charlm generate` and `charlm evaluate` may run a model: written once for both.
quantize_option = click.option(
    "--quantize",
    type=click.Choice(QUANTIZATIONS),
    default=None,
    help="Run the recurrent and output layers with 8-bit weights on the CPU: several times "
    "faster at batch 1, the loss within about 1% (implies --device cpu).  [default: float32]",
)
