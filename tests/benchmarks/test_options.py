"""The options every benchmark script shares, read from each command's own parameters."""

import importlib
import pkgutil

import click
import pytest

import benchmarks


def commands() -> dict[str, click.Command]:
    """Every benchmark script's command by module name (the helper modules have none)."""
    found = {}
    for module in pkgutil.iter_modules(benchmarks.__path__):
        main = getattr(importlib.import_module(f"benchmarks.{module.name}"), "main", None)
        if isinstance(main, click.Command):
            found[module.name] = main
    return found


def options(command: click.Command) -> set[str]:
    return {name for param in command.params for name in param.opts}


def test_every_script_writes_its_results_where_out_says():
    scripts = commands()
    assert "loading" in scripts and "report" in scripts
    del scripts["report"]  # it reads results (--results) and writes a page (--doc)
    assert [name for name, main in scripts.items() if "--out" not in options(main)] == []


@pytest.mark.parametrize("name", ["loading", "shakespeare_5min"])
def test_scripts_that_train_on_the_cpu_take_threads(name):
    assert "--threads" in options(commands()[name])
