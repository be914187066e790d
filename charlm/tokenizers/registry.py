"""Name → tokenizer class, from built-ins, `register()` calls and entry points.

Built-ins and plugins take the same path: each is a "module:Class" reference imported the
first time it is needed, so `charlm --help` never imports Hugging Face `tokenizers`, and a
broken plugin only fails when it is used (or listed, where it shows its error).
Set CHARLM_LOAD_PLUGINS to a comma-separated list of package (or tokenizer) names to load
only those plugins; set it empty to load none.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import json
import operator
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from charlm import jsontext
from charlm.errors import CharlmError, MissingTokenizerError, TokenizerError
from charlm.limits import MAX_VOCAB_SIZE, too_large

from .base import Tokenizer

ENTRY_POINT_GROUP = "charlm.tokenizers"
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
PLUGINS_VARIABLE = "CHARLM_LOAD_PLUGINS"
# A trained tokenizer is tried on this many slices of its text, of this many characters each,
# before anything is encoded with it: enough to catch a plugin's wrong ids, cheap for any book.
SAMPLE_SLICES = 3
SAMPLE_CHARS = 4096
BUILTINS = {
    "char": "charlm.tokenizers.char:CharTokenizer",
    "byte": "charlm.tokenizers.byte:ByteTokenizer",
    "word": "charlm.tokenizers.word:WordTokenizer",
    "bpe": "charlm.tokenizers.hf:BPETokenizer",
    "wordpiece": "charlm.tokenizers.hf:WordPieceTokenizer",
    "unigram": "charlm.tokenizers.hf:UnigramTokenizer",
    "hf": "charlm.tokenizers.hf:HFTokenizer",
}


@dataclass
class TokenizerInfo:
    """One available tokenizer and where it comes from, for `charlm tokenizers`."""

    name: str
    reference: str | type[Tokenizer]  # "module:Class", or the class itself
    source: str  # "built in", "registered in code" or "plugin"
    package: str | None = None  # the distribution that provides a plugin
    version: str | None = None
    clashes: tuple[str, ...] = ()  # the origins of other claims to this name, not used
    _cls: type[Tokenizer] | None = field(default=None, repr=False)

    @property
    def cls(self) -> type[Tokenizer]:
        """The tokenizer class, imported on first use."""
        if self._cls is None:
            self._cls = _resolve(self)
        return self._cls

    @property
    def provider(self) -> str:
        """ "built in", "registered in code" or "plugin PACKAGE VERSION"."""
        if self.source != "plugin":
            return self.source
        return " ".join(p for p in ("plugin", self.package, self.version) if p)

    @property
    def origin(self) -> str:
        """`provider`, and any other package that claims the name (which is not used)."""
        if not self.clashes:
            return self.provider
        return f"{self.provider}; the same name in {', '.join(self.clashes)} is not used"

    @property
    def description(self) -> str:
        return self.cls.description


def _resolve(info: TokenizerInfo) -> type[Tokenizer]:
    if not isinstance(info.reference, str):
        return info.reference  # checked when it was registered
    module_name, _, attr = info.reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    # A broken plugin must not break charlm itself, not even one that calls sys.exit() as it
    # is imported; Ctrl-C (KeyboardInterrupt) still stops charlm.
    except (Exception, SystemExit) as exc:
        raise TokenizerError(
            f"tokenizer {info.name!r} ({info.origin}) failed to load: {_described(exc)}"
        ) from exc
    return _usable(info, obj)


def _usable(info: TokenizerInfo, obj: Any) -> type[Tokenizer]:
    """`obj`, if it is a complete tokenizer class that can go by `info.name`."""
    what = f"tokenizer {info.name!r} ({info.origin})"
    if not (isinstance(obj, type) and issubclass(obj, Tokenizer)):
        raise TokenizerError(f"{what} is not a charlm.tokenizers.Tokenizer class")
    if inspect.isabstract(obj):  # its train() would be the abstract one, which returns None
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise TokenizerError(f"{what} is incomplete: its class does not implement {missing}")
    _give_name(obj, info.name, what)
    return obj


def _give_name(cls: type[Tokenizer], name: str, what: str) -> None:
    """Make `cls.name` the name it is registered under: checkpoints and the token cache
    record `tokenizer.name`, and a checkpoint is loaded by looking that name up. A class
    that names itself otherwise is refused; one without a name of its own (a subclass of
    another tokenizer, say) takes the registered one."""
    if cls.name == name:
        return
    own = cls.__dict__.get("name")
    if own:
        raise TokenizerError(
            f"{what}: its class {cls.__name__} says name = {own!r}; checkpoints record the "
            f"class's name, so it must be {name!r} too"
        )
    cls.name = name


def _described(exc: BaseException) -> str:
    """ "Type: first line of the message", for a one-line error."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Registry:
    # The one piece of process-wide state in charlm: a registry has to be shared so that a
    # plugin registered in one place is found in another (as simonw/llm's plugin manager is).
    def __init__(self) -> None:
        self._infos: dict[str, TokenizerInfo] = {}
        self._plugins: dict[str, TokenizerInfo] = {}
        self._unused: list[TokenizerInfo] = []  # plugins whose name another plugin has
        self._disabled: dict[str, TokenizerInfo] = {}  # plugins CHARLM_LOAD_PLUGINS leaves out
        self._plugins_loaded = False
        for name, reference in BUILTINS.items():
            self.add(TokenizerInfo(name, reference, "built in"))

    def add(self, info: TokenizerInfo) -> None:
        if not info.name:
            raise TokenizerError(f"tokenizer {info.reference!r} has no name")
        self._infos[info.name] = info

    def reload_plugins(self) -> None:
        self._plugins_loaded = False
        self._plugins, self._unused, self._disabled = {}, [], {}

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        allowed = os.environ.get(PLUGINS_VARIABLE)
        wanted = None if allowed is None else {_normalise(n) for n in allowed.split(",") if n}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            package = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            info = TokenizerInfo(ep.name, ep.value, "plugin", package, version)
            if wanted is not None and not wanted & {_normalise(ep.name), _normalise(package or "")}:
                self._disabled.setdefault(ep.name, info)
            elif self._plugins.setdefault(ep.name, info) is not info:
                self._unused.append(info)

    def infos(self) -> list[TokenizerInfo]:
        self._load_plugins()
        merged = {**self._plugins, **self._infos}  # built-ins and code win over plugins
        for info in merged.values():
            info.clashes = self._clashes(info)
        return sorted(merged.values(), key=lambda info: info.name)

    def _clashes(self, winner: TokenizerInfo) -> tuple[str, ...]:
        """Where else `winner`'s name is claimed: plugins that come second to it."""
        claims = [self._plugins.get(winner.name), *self._unused]
        return tuple(
            c.provider
            for c in claims
            if c is not None and c is not winner and c.name == winner.name
        )

    def info(self, name: str) -> TokenizerInfo | None:
        if name in self._infos:
            return self._infos[name]
        self._load_plugins()
        return self._plugins.get(name)

    def disabled(self, name: str) -> TokenizerInfo | None:
        """The installed plugin named `name` that CHARLM_LOAD_PLUGINS leaves out, if any."""
        self._load_plugins()
        return self._disabled.get(name)

    def find(self, name: str) -> TokenizerInfo:
        info = self.info(name)
        if info is not None:
            return info
        off = self.disabled(name)
        if off is not None:
            raise MissingTokenizerError(f"no tokenizer named {name!r} is available: {_off(off)}")
        names = [i.name for i in self.infos()]
        close = difflib.get_close_matches(name.lower(), names, n=1)
        if close:
            raise MissingTokenizerError(
                f"no tokenizer named {name!r}; did you mean {close[0]!r}? "
                f"(available: {', '.join(names)})"
            )
        raise MissingTokenizerError(
            f"no tokenizer named {name!r} is available (available: {', '.join(names)}); "
            "install the package that provides it, then see `charlm tokenizers`"
        )

    def get(self, name: str) -> type[Tokenizer]:
        return self.find(name).cls


def _off(info: TokenizerInfo) -> str:
    """Why a plugin that is installed is not used, and how to use it."""
    setting = f"{PLUGINS_VARIABLE}={os.environ.get(PLUGINS_VARIABLE, '')!r}"
    return (
        f"{info.provider} provides it, but plugins are disabled by {setting}; add "
        f"{info.package or info.name} to {PLUGINS_VARIABLE}, or unset it"
    )


_REGISTRY = _Registry()


def register(cls: type[Tokenizer] | None = None, *, name: str | None = None) -> Any:
    """Register a tokenizer class; usable as `register(Cls)` or as a `@register` decorator.

    `name` is for a class without a name of its own (it is given this one); a class whose
    own `name` differs is refused, as checkpoints record the class's name.
    """

    def add(tokenizer_cls: type[Tokenizer]) -> type[Tokenizer]:
        if not (isinstance(tokenizer_cls, type) and issubclass(tokenizer_cls, Tokenizer)):
            raise TokenizerError(f"{tokenizer_cls!r} is not a charlm.tokenizers.Tokenizer class")
        info = TokenizerInfo(name or tokenizer_cls.name, tokenizer_cls, "registered in code")
        _usable(info, tokenizer_cls)  # refused now, not when it is first used
        _REGISTRY.add(info)
        return tokenizer_cls

    return add(cls) if cls is not None else add


def reload_plugins() -> None:
    """Look for plugin packages again (after installing one into a running interpreter)."""
    _REGISTRY.reload_plugins()


def get_tokenizer_class(name: str) -> type[Tokenizer]:
    """The class registered under `name`."""
    return _REGISTRY.get(name)


def tokenizer_package(name: str) -> str | None:
    """The distribution that provides tokenizer `name`, if it is a plugin."""
    info = _REGISTRY.info(name)
    return info.package if info is not None else None


def tokenizer_origin(name: str) -> str | None:
    """Where tokenizer `name` comes from, with a plugin's package and version (its code
    decides the ids, so the token cache keys by it)."""
    info = _REGISTRY.info(name)
    return info.provider if info is not None else None


def available_tokenizers() -> list[TokenizerInfo]:
    """Every tokenizer charlm can use now, sorted by name; `origin` names any other package
    that claims the same name."""
    return _REGISTRY.infos()


def train_tokenizer(name: str, text: str, options: Mapping[str, Any] | None = None) -> Tokenizer:
    """A tokenizer `name` trained on `text`; string option values are converted by type.

    Both data paths (books and examples) get their tokenizer here, so this is where it is
    checked, once, before anything is encoded or trained with it (see `_verified`).
    """
    info = _REGISTRY.find(name)
    cls = info.cls
    with _running(info, "train"):
        tokenizer = cls.train(text, **cls.check_options(options or {}))
    return _verified(_checked(tokenizer, info, "trained"), info, text)


def tokenizer_from_state(name: str, state: dict[str, Any], package: str | None = None) -> Tokenizer:
    """Rebuild a saved tokenizer by name; `package` names the plugin to install if missing."""
    info = _REGISTRY.info(name)
    if info is None:
        raise MissingTokenizerError(
            f"this checkpoint needs the tokenizer {name!r}, {_hint(name, package)}"
        )
    return _restored(info, state)


def _hint(name: str, package: Any) -> str:
    off = _REGISTRY.disabled(name)
    if off is not None:
        return f"which is not used: {_off(off)}"
    # The package name comes from the checkpoint, i.e. from whoever made it: it is shown
    # only when it is a plain distribution name, never as text a shell would run.
    plain = isinstance(package, str) and _DISTRIBUTION_NAME.fullmatch(package)
    hint = (
        f"pip install {package} (if you trust it)"
        if plain
        else "install the package that provides it"
    )
    return f"which is not installed; {hint}"


def _restored(info: TokenizerInfo, state: Any) -> Tokenizer:
    cls = info.cls
    with _running(info, "from_state"):
        tokenizer = cls.from_state(state)
    return _checked(tokenizer, info, "saved")


@contextlib.contextmanager
def _running(info: TokenizerInfo, method: str) -> Iterator[None]:
    """Run a plugin's `method`: an exception it did not mean for the user (anything but a
    CharlmError) becomes one TokenizerError line naming the tokenizer and its package.
    A built-in's passes through: it is a bug in charlm, and its traceback says where."""
    try:
        yield
    except CharlmError:
        raise
    except (Exception, SystemExit) as exc:
        if info.source == "built in":
            raise
        raise TokenizerError(
            f"tokenizer {info.name!r} ({info.provider}) failed in {method}: {_described(exc)}"
        ) from exc


def _checked(tokenizer: Any, info: TokenizerInfo, how: str) -> Tokenizer:
    """`tokenizer`, if it is one of `info`'s whose vocabulary a model can use."""
    what = f"tokenizer {info.name!r} ({info.provider})"
    method = "train" if how == "trained" else "from_state"
    if not isinstance(tokenizer, Tokenizer):
        raise TokenizerError(
            f"{what}: {method} returned {type(tokenizer).__name__}, not a Tokenizer"
        )
    if tokenizer.name != info.name:  # it would be saved under a name that loads another
        raise TokenizerError(f"{what}: {method} returned a tokenizer named {tokenizer.name!r}")
    with _running(info, "vocab_size"):
        size = operator.index(tokenizer.vocab_size)
    if size > MAX_VOCAB_SIZE:
        vocabulary = f"the {how} {tokenizer.name} vocabulary"
        raise TokenizerError(
            f"{too_large(vocabulary, size, MAX_VOCAB_SIZE, 'tokens')}; use a smaller one"
        )
    return tokenizer


def _verified(tokenizer: Tokenizer, info: TokenizerInfo, text: str) -> Tokenizer:
    """`tokenizer`, once it keeps its contract on a sample of `text`: `encode` gives integer
    ids in range(vocab_size), and (for code charlm does not own) `get_state` is JSON that
    `from_state` turns back into a tokenizer giving the same ids. A plugin that breaks it
    fails here in one line, before any training, instead of in torch (an id out of range) or
    when the checkpoint is written after the last step (a state that is not JSON), losing
    the run. A sample keeps this cheap for any book."""
    sample = _sample(text)
    ids = [_sample_ids(tokenizer, info, piece) for piece in sample]
    # The built-ins' states are tested to round-trip; redoing it here would cost a large
    # tokenizer.json as much again as loading it (0.7 s for 200,000 tokens).
    if info.source != "built in":
        _round_trip(tokenizer, info, dict(zip(sample, ids, strict=True)))
    return tokenizer


def _round_trip(tokenizer: Tokenizer, info: TokenizerInfo, ids: dict[str, np.ndarray]) -> None:
    """Raise TokenizerError unless `tokenizer` saved as JSON and rebuilt gives `ids`."""
    what = f"tokenizer {info.name!r} ({info.provider})"
    with _running(info, "get_state"):
        state = tokenizer.get_state()
    try:
        saved = json.loads(jsontext.dumps(state))  # as config.json will hold it
    except (TypeError, ValueError) as exc:
        raise TokenizerError(f"{what}: get_state returned what JSON cannot hold ({exc})") from None
    if not isinstance(saved, dict):
        raise TokenizerError(f"{what}: get_state returned {type(state).__name__}, not a dict")
    rebuilt = _restored(info, saved)
    for piece, expected in ids.items():
        if not np.array_equal(_sample_ids(rebuilt, info, piece), expected):
            raise TokenizerError(
                f"{what}: from_state(get_state()) gives other ids than the tokenizer saved"
            )


def _sample(text: str) -> list[str]:
    """Up to SAMPLE_SLICES slices of SAMPLE_CHARS characters, from the start to the end."""
    if len(text) <= SAMPLE_SLICES * SAMPLE_CHARS:
        return [text]
    step = (len(text) - SAMPLE_CHARS) // (SAMPLE_SLICES - 1)
    return [text[i * step : i * step + SAMPLE_CHARS] for i in range(SAMPLE_SLICES)]


def _sample_ids(tokenizer: Tokenizer, info: TokenizerInfo, text: str) -> np.ndarray:
    """`tokenizer.encode(text)`, if it is integer ids in range(vocab_size)."""
    with _running(info, "encode"):
        ids = np.asarray(tokenizer.encode(text))
    what = f"tokenizer {info.name!r} ({info.provider})"
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise TokenizerError(f"{what}: encode returned {ids.dtype} values, not a list of int ids")
    outside = ids[(ids < 0) | (ids >= tokenizer.vocab_size)]
    if outside.size:
        raise TokenizerError(
            f"{what}: encode gave the id {int(outside[0])}, outside its vocabulary "
            f"(ids 0 to {tokenizer.vocab_size - 1})"
        )
    return ids
