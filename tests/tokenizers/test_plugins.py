"""A tokenizer plugin package, end to end: listed, trained with, reloaded, and missed.

The example package under tests/plugins/ is installed the way pip lays out an install: its
module and a `*.dist-info` folder (METADATA and entry_points.txt, generated from its
pyproject.toml) in a directory on sys.path. That is what entry-point discovery reads, and it
takes milliseconds and leaves the virtual environment untouched.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.data.prepare import prepare_data
from charlm.tokenizers import ENTRY_POINT_GROUP, available_tokenizers, reload_plugins
from tests.helpers import TINY_MODEL_ARGS

tomllib = pytest.importorskip("tomllib")

PLUGIN = Path(__file__).parents[1] / "plugins" / "charlm-example-tokenizer"
MODULE = "charlm_example_tokenizer"
TINY_MODEL = [
    *TINY_MODEL_ARGS,
    "--seq-len",
    "8",
    "--batch-size",
    "2",
    "--max-steps",
    "2",
    "--val-fraction",
    "0.2",
    "--device",
    "cpu",
]


def install(site: Path) -> None:
    """Install the example plugin into `site` as pip would: the package and its dist-info."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    shutil.copytree(PLUGIN / "src" / MODULE, site / MODULE)
    dist_info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n",
        encoding="utf-8",
    )
    groups = project["entry-points"]
    assert ENTRY_POINT_GROUP in groups
    (dist_info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {ref}\n" for name, ref in points.items())
            for group, points in groups.items()
        ),
        encoding="utf-8",
    )


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The example plugin installed for one test, and forgotten again afterwards."""
    site = tmp_path / "site-packages"
    site.mkdir()
    install(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("CHARLM_LOAD_PLUGINS", raising=False)
    reload_plugins()
    yield site
    sys.modules.pop(MODULE, None)
    monkeypatch.undo()
    reload_plugins()


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_plugin_is_listed_with_its_package_and_version(plugin):
    result = run("tokenizers")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("pairs "))
    assert "plugin charlm-example-tokenizer 0.1.0" in line
    assert "pairs of characters" in line
    assert "min_freq=int" in result.output


@pytest.mark.slow
def test_plugin_trains_saves_and_generates_through_the_cli(plugin, tiny_book, tmp_path):
    out = tmp_path / "ck"
    result = run(
        "train",
        str(tiny_book),
        "--tokenizer",
        "pairs",
        "--tokenizer-option",
        "min_freq=1",
        "--out",
        str(out),
        *TINY_MODEL,
    )
    assert result.exit_code == 0, result.output
    section = json.loads((out / "config.json").read_text(encoding="utf-8"))["tokenizer"]
    assert section["name"] == "pairs"
    assert section["package"] == "charlm-example-tokenizer"

    result = run(
        "generate",
        str(out),
        "--prefix",
        "the quick",
        "--length",
        "20",
        "--seed",
        "0",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the quick")
    assert len(result.stdout) > len("the quick") + 20  # 20 tokens of two characters each


@pytest.mark.slow
def test_a_checkpoint_whose_plugin_is_gone_names_tokenizer_and_package(plugin, tiny_book, tmp_path):
    out = tmp_path / "ck"
    result = run("train", str(tiny_book), "--tokenizer", "pairs", "--out", str(out), *TINY_MODEL)
    assert result.exit_code == 0, result.output
    sys.path.remove(str(plugin))  # uninstalled (the fixture restores sys.path afterwards)
    sys.modules.pop(MODULE, None)
    reload_plugins()

    result = CliRunner().invoke(cli, ["generate", str(out), "--device", "cpu"])
    assert result.exit_code == 1
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message
    assert "'pairs'" in message and "pip install charlm-example-tokenizer" in message


@pytest.mark.parametrize(
    ("allowed", "listed"),
    [("", False), ("other-package", False), ("charlm-example-tokenizer", True), ("pairs", True)],
)
def test_charlm_load_plugins_limits_which_plugins_load(plugin, monkeypatch, allowed, listed):
    monkeypatch.setenv("CHARLM_LOAD_PLUGINS", allowed)
    reload_plugins()
    names = {info.name for info in available_tokenizers()}
    assert ("pairs" in names) is listed
    assert "char" in names  # built-ins are never filtered


def test_a_broken_plugin_is_shown_not_fatal(plugin, tiny_book):
    (plugin / MODULE / "__init__.py").write_text("raise ImportError('half installed')\n")
    result = run("tokenizers")
    assert result.exit_code == 0
    assert "cannot load" in result.output and "half installed" in result.output
    result = CliRunner().invoke(cli, ["train", str(tiny_book), "--tokenizer", "pairs"])
    assert result.exit_code == 1
    assert "tokenizer 'pairs' (plugin charlm-example-tokenizer 0.1.0) failed to load" in (
        result.output
    )


def test_a_new_plugin_version_misses_the_token_cache(plugin, tiny_book, tmp_path):
    # A plugin's code decides its ids: another version must not reuse the old version's.
    options = {"tokenizer": "pairs", "cache_dir": tmp_path / "cache"}
    assert not prepare_data([tiny_book], **options).cached
    assert prepare_data([tiny_book], **options).cached
    metadata = next(plugin.glob("*.dist-info")) / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.1.0", "Version: 0.2.0"))
    reload_plugins()
    assert "0.2.0" in next(i.origin for i in available_tokenizers() if i.name == "pairs")
    assert not prepare_data([tiny_book], **options).cached
