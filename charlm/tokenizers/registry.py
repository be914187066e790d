"""Name → tokenizer class, from built-ins, `register()` calls and entry points.

Built-ins and plugins take the same path: each is a "module:Class" reference imported the
first time it is needed, so `charlm --help` never imports Hugging Face `tokenizers`, and a
broken plugin only fails when it is used (or listed, where it shows its error).
Set CHARLM_LOAD_PLUGINS to a comma-separated list of package (or tokenizer) names to load
only those plugins; set it empty to load none.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from charlm.errors import MissingTokenizerError, TokenizerError
from charlm.limits import MAX_VOCAB_SIZE, too_large

from .base import Tokenizer

ENTRY_POINT_GROUP = "charlm.tokenizers"
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
PLUGINS_VARIABLE = "CHARLM_LOAD_PLUGINS"
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
    _cls: type[Tokenizer] | None = field(default=None, repr=False)

    @property
    def cls(self) -> type[Tokenizer]:
        """The tokenizer class, imported on first use."""
        if self._cls is None:
            self._cls = _resolve(self)
        return self._cls

    @property
    def origin(self) -> str:
        """ "built in", "registered in code" or "plugin PACKAGE VERSION"."""
        if self.source != "plugin":
            return self.source
        return " ".join(p for p in ("plugin", self.package, self.version) if p)

    @property
    def description(self) -> str:
        return self.cls.description


def _resolve(info: TokenizerInfo) -> type[Tokenizer]:
    if not isinstance(info.reference, str):
        return info.reference
    module_name, _, attr = info.reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin must not break charlm itself
        raise TokenizerError(
            f"tokenizer {info.name!r} ({info.origin}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, Tokenizer)):
        raise TokenizerError(
            f"tokenizer {info.name!r} ({info.origin}) is not a charlm.tokenizers.Tokenizer class"
        )
    return obj


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Registry:
    # The one piece of process-wide state in charlm: a registry has to be shared so that a
    # plugin registered in one place is found in another (as simonw/llm's plugin manager is).
    def __init__(self) -> None:
        self._infos: dict[str, TokenizerInfo] = {}
        self._plugins: dict[str, TokenizerInfo] = {}
        self._plugins_loaded = False
        for name, reference in BUILTINS.items():
            self.add(TokenizerInfo(name, reference, "built in"))

    def add(self, info: TokenizerInfo) -> None:
        if not info.name:
            raise TokenizerError(f"tokenizer {info.reference!r} has no name")
        self._infos[info.name] = info

    def reload_plugins(self) -> None:
        self._plugins_loaded = False
        self._plugins = {}

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        allowed = os.environ.get(PLUGINS_VARIABLE)
        wanted = None if allowed is None else {_normalise(n) for n in allowed.split(",") if n}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            package = ep.dist.name if ep.dist else None
            if wanted is not None and not wanted & {_normalise(ep.name), _normalise(package or "")}:
                continue
            version = ep.dist.version if ep.dist else None
            self._plugins.setdefault(
                ep.name, TokenizerInfo(ep.name, ep.value, "plugin", package, version)
            )

    def infos(self) -> list[TokenizerInfo]:
        self._load_plugins()
        merged = {**self._plugins, **self._infos}  # built-ins and code win over plugins
        return sorted(merged.values(), key=lambda info: info.name)

    def info(self, name: str) -> TokenizerInfo | None:
        if name in self._infos:
            return self._infos[name]
        self._load_plugins()
        return self._plugins.get(name)

    def get(self, name: str) -> type[Tokenizer]:
        info = self.info(name)
        if info is None:
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
        return info.cls


_REGISTRY = _Registry()


def register(cls: type[Tokenizer] | None = None, *, name: str | None = None) -> Any:
    """Register a tokenizer class; usable as `register(Cls)` or as a `@register` decorator."""

    def add(tokenizer_cls: type[Tokenizer]) -> type[Tokenizer]:
        if not (isinstance(tokenizer_cls, type) and issubclass(tokenizer_cls, Tokenizer)):
            raise TokenizerError(f"{tokenizer_cls!r} is not a charlm.tokenizers.Tokenizer class")
        info = TokenizerInfo(name or tokenizer_cls.name, tokenizer_cls, "registered in code")
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
    return info.origin if info is not None else None


def available_tokenizers() -> list[TokenizerInfo]:
    """Every tokenizer charlm can use now, sorted by name."""
    return _REGISTRY.infos()


def train_tokenizer(name: str, text: str, options: Mapping[str, Any] | None = None) -> Tokenizer:
    """A tokenizer `name` trained on `text`; string option values are converted by type."""
    cls = get_tokenizer_class(name)
    return _checked(cls.train(text, **cls.check_options(options or {})), "trained")


def tokenizer_from_state(name: str, state: dict[str, Any], package: str | None = None) -> Tokenizer:
    """Rebuild a saved tokenizer by name; `package` names the plugin to install if missing."""
    if _REGISTRY.info(name) is None:
        # The package name comes from the checkpoint, i.e. from whoever made it: it is shown
        # only when it is a plain distribution name, never as text a shell would run.
        plain = isinstance(package, str) and _DISTRIBUTION_NAME.fullmatch(package)
        hint = (
            f"pip install {package} (if you trust it)"
            if plain
            else "install the package that provides it"
        )
        raise MissingTokenizerError(
            f"this checkpoint needs the tokenizer {name!r}, which is not installed; {hint}"
        )
    return _checked(get_tokenizer_class(name).from_state(state), "saved")


def _checked(tokenizer: Tokenizer, how: str) -> Tokenizer:
    """`tokenizer`, unless its vocabulary is too large for any model to use."""
    size = tokenizer.vocab_size
    if size > MAX_VOCAB_SIZE:
        what = f"the {how} {tokenizer.name} vocabulary"
        raise TokenizerError(
            f"{too_large(what, size, MAX_VOCAB_SIZE, 'tokens')}; use a smaller one"
        )
    return tokenizer
