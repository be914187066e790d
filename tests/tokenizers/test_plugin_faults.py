"""Plugins with mistakes in them: each is one `Error:` line naming the tokenizer and its
package, found before any training, and never a traceback, a silent exit or a lost run.

The plugins are written here as one module and installed as test_plugins.py installs the
example plugin: the module and a `*.dist-info` folder on sys.path, no pip.
"""

from __future__ import annotations

import sys

import pytest

from charlm.errors import MissingTokenizerError, TokenizerError
from charlm.tokenizers import (
    ENTRY_POINT_GROUP,
    Tokenizer,
    get_tokenizer_class,
    register,
    reload_plugins,
    tokenizer_from_state,
    train_tokenizer,
)
from charlm.tokenizers.char import CharTokenizer
from tests.helpers import TINY_TRAIN_ARGS, one_error_line, run_cli

MODULE = "charlm_faulty_tokenizers"
PACKAGE = "charlm-faulty"
ORIGIN = f"plugin {PACKAGE} 1.0"

SOURCE = """
from charlm.tokenizers import Tokenizer


class Good(Tokenizer):
    name = "good"
    description = "one token per character"

    def __init__(self, chars):
        self.chars = list(chars)

    @classmethod
    def train(cls, text, **options):
        return cls(sorted(set(text)))

    def encode(self, text):
        return [self.chars.index(c) for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    @property
    def vocab_size(self):
        return len(self.chars)

    def get_state(self):
        return {"chars": self.chars}

    @classmethod
    def from_state(cls, state):
        return cls(state["chars"])


class TrainRaises(Good):
    name = "train-raises"

    @classmethod
    def train(cls, text, **options):
        raise ValueError("no vocabulary today")


class TrainReturnsNone(Good):
    name = "train-none"

    @classmethod
    def train(cls, text, **options):
        return None


class FromStateRaises(Good):
    name = "from-state-raises"

    @classmethod
    def from_state(cls, state):
        return cls(state["letters"])


class Abstract(Tokenizer):
    name = "abstract"

    def encode(self, text):
        return []


class IdsTooLarge(Good):
    name = "ids-too-large"

    def encode(self, text):
        return [i + 1 for i in super().encode(text)]


class IdsNegative(Good):
    name = "ids-negative"

    def encode(self, text):
        return [-1 for _ in text]


class IdsNotInts(Good):
    name = "ids-floats"

    def encode(self, text):
        return [float(i) for i in super().encode(text)]


class StateNotJson(Good):
    name = "state-set"

    def get_state(self):
        return {"chars": set(self.chars)}


class StateLossy(Good):
    name = "state-lossy"

    def get_state(self):
        return {"chars": self.chars[::-1]}


class OtherName(Good):
    name = "othername"
"""

ENTRY_POINTS = {
    "good": "Good",
    "train-raises": "TrainRaises",
    "train-none": "TrainReturnsNone",
    "from-state-raises": "FromStateRaises",
    "abstract": "Abstract",
    "ids-too-large": "IdsTooLarge",
    "ids-negative": "IdsNegative",
    "ids-floats": "IdsNotInts",
    "state-set": "StateNotJson",
    "state-lossy": "StateLossy",
    "mismatch": "OtherName",
}


def install(site, package: str, points: dict[str, str]) -> None:
    """A package named `package` whose entry points are `points` (name → "module:Class")."""
    dist_info = site / f"{package.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir()
    metadata = f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n"
    (dist_info / "METADATA").write_text(metadata, encoding="utf-8")
    lines = "".join(f"{name} = {ref}\n" for name, ref in points.items())
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}", "utf-8")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The faulty plugins installed for one test, and forgotten again afterwards."""
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / f"{MODULE}.py").write_text(SOURCE, encoding="utf-8")
    install(site, PACKAGE, {n: f"{MODULE}:{cls}" for n, cls in ENTRY_POINTS.items()})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("CHARLM_LOAD_PLUGINS", raising=False)
    reload_plugins()
    yield site
    for module in (MODULE, "charlm_exits_on_import", "charlm_clash"):
        sys.modules.pop(module, None)
    monkeypatch.undo()
    reload_plugins()


def test_the_good_plugin_of_the_set_trains_and_reloads(site):
    tokenizer = train_tokenizer("good", "abc")
    assert tokenizer_from_state("good", tokenizer.get_state()).encode("cab") == [2, 0, 1]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("train-raises", "failed in train: ValueError: no vocabulary today"),
        ("train-none", "train returned NoneType, not a Tokenizer"),
        ("from-state-raises", "failed in from_state: KeyError: 'letters'"),
        ("abstract", "is incomplete: its class does not implement decode, from_state, "),
        ("ids-too-large", "encode gave the id 3, outside its vocabulary (ids 0 to 2)"),
        ("ids-negative", "encode gave the id -1, outside its vocabulary"),
        ("ids-floats", "encode returned float64 values, not a list of int ids"),
        ("state-set", "get_state returned what JSON cannot hold (Object of type set"),
        ("state-lossy", "from_state(get_state()) gives other ids than the tokenizer saved"),
    ],
)
def test_a_faulty_plugin_fails_in_one_line_naming_it_and_its_package(site, name, message):
    # Before: a traceback from the plugin, from registry._checked (train returning None: an
    # abstract class) or from deep in torch (ids out of range), or, for a state that is not
    # JSON, only when config.json was written after the last training step.
    with pytest.raises(TokenizerError) as info:
        train_tokenizer(name, "abc")
    text = str(info.value)
    assert text.startswith(f"tokenizer {name!r} ({ORIGIN})")
    assert message in text and "\n" not in text


def test_a_saved_state_a_plugin_cannot_read_is_one_line(site):
    with pytest.raises(TokenizerError, match=f"'from-state-raises' .{ORIGIN}. failed in from_"):
        tokenizer_from_state("from-state-raises", {"chars": ["a"]})


def test_train_fails_before_training_when_the_state_is_not_json(site, tiny_book, tmp_path):
    # Before, with --no-cache, every step ran and then writing config.json failed.
    out = tmp_path / "out"
    args = ["--tokenizer", "state-set", "--no-cache", "--out", out, "--max-steps", "200"]
    result = run_cli("train", tiny_book, *args, *TINY_TRAIN_ARGS)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"tokenizer 'state-set' ({ORIGIN}): get_state returned what JSON" in line
    assert not (out / "config.json").exists()


def test_an_abstract_plugin_is_refused_when_it_is_resolved(site):
    with pytest.raises(TokenizerError, match="'abstract' .* is incomplete"):
        get_tokenizer_class("abstract")
    listing = run_cli("tokenizers").output
    assert "cannot load: tokenizer 'abstract'" in listing


def test_a_plugin_that_exits_as_it_is_imported_is_shown_not_fatal(site, tiny_book):
    # Before: SystemExit escaped the registry, and `charlm tokenizers` stopped with rc 3.
    (site / "charlm_exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    install(site, "charlm-exits", {"exits": "charlm_exits_on_import:Anything"})
    reload_plugins()
    result = run_cli("tokenizers")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines() if line[:1] != " "}
    assert "plugin charlm-exits 1.0  (cannot load:" in lines["exits"]
    assert "failed to load: SystemExit: 3" in lines["exits"]
    assert "one token per character" in lines["good"]  # the listing goes on after it
    result = run_cli("train", tiny_book, "--tokenizer", "exits", *TINY_TRAIN_ARGS)
    assert result.exit_code == 1
    assert "'exits' (plugin charlm-exits 1.0) failed to load" in one_error_line(result)


def test_ctrl_c_while_a_plugin_is_imported_still_stops_charlm(site):
    (site / "charlm_interrupted.py").write_text("raise KeyboardInterrupt\n")
    install(site, "charlm-interrupted", {"interrupted": "charlm_interrupted:Anything"})
    reload_plugins()
    with pytest.raises(KeyboardInterrupt):
        get_tokenizer_class("interrupted")


def test_an_entry_point_named_unlike_its_class_is_refused(site):
    # Before: the checkpoint recorded "othername", which no entry point provides.
    with pytest.raises(TokenizerError, match="says name = 'othername'.* must be 'mismatch'"):
        train_tokenizer("mismatch", "abc")


def test_register_refuses_a_name_its_class_contradicts():
    class Mine(CharTokenizer):
        name = "test-mine"

    with pytest.raises(TokenizerError, match="says name = 'test-mine'"):
        register(Mine, name="test-other-name")
    with pytest.raises(MissingTokenizerError):
        get_tokenizer_class("test-other-name")


def test_register_gives_its_name_to_a_class_without_one_of_its_own():
    # Before: registered as "test-lower", saved as "char" (the name it inherits).
    @register(name="test-lower")
    class Lower(CharTokenizer):
        pass

    tokenizer = train_tokenizer("test-lower", "abc")
    assert Lower.name == tokenizer.name == "test-lower"
    assert CharTokenizer.name == "char"
    assert type(tokenizer_from_state(tokenizer.name, tokenizer.get_state())) is Lower


def test_disabled_plugins_are_said_to_be_disabled_not_missing(site, monkeypatch):
    # Before: "which is not installed; pip install charlm-faulty", though it is installed.
    monkeypatch.setenv("CHARLM_LOAD_PLUGINS", "")
    reload_plugins()
    with pytest.raises(MissingTokenizerError) as info:
        tokenizer_from_state("good", {"chars": ["a"]}, PACKAGE)
    message = str(info.value)
    assert "not installed" not in message
    assert f"{ORIGIN} provides it, but plugins are disabled by CHARLM_LOAD_PLUGINS=''" in message
    with pytest.raises(MissingTokenizerError, match="disabled by CHARLM_LOAD_PLUGINS='other'"):
        monkeypatch.setenv("CHARLM_LOAD_PLUGINS", "other")
        reload_plugins()
        train_tokenizer("good", "abc")


def test_names_claimed_twice_are_listed_as_clashes(site):
    # Before: the second claim was dropped without a word.
    (site / "charlm_clash.py").write_text(SOURCE, encoding="utf-8")
    install(site, "charlm-clash", {"char": "charlm_clash:Good", "good": "charlm_clash:Good"})
    reload_plugins()
    lines = run_cli("tokenizers", "--no-options").output.splitlines()
    char = next(line for line in lines if line.startswith("char "))
    assert "[built in; the same name in plugin charlm-clash 1.0 is not used]" in char
    good = next(line for line in lines if line.startswith("good "))
    assert "charlm-clash 1.0" in good and f"{PACKAGE} 1.0" in good and "is not used" in good
    assert train_tokenizer("char", "ab").name == "char"  # the built-in is the one used


def test_a_plain_class_still_registers_under_its_own_name():
    class Plain(CharTokenizer):
        name = "test-plain"

    assert register(Plain) is Plain
    assert get_tokenizer_class("test-plain") is Plain
    assert isinstance(train_tokenizer("test-plain", "x"), Tokenizer)
