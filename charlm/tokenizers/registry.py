"""Name → tokenizer class, from built-ins, `register()` calls and entry points."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from charlm.errors import TokenizerError

from .base import Tokenizer

ENTRY_POINT_GROUP = "charlm.tokenizers"


@dataclass(frozen=True)
class TokenizerInfo:
    """Where a tokenizer comes from, for `charlm tokenizers`."""

    name: str
    cls: type[Tokenizer]
    source: str  # "built in", "registered in code", or "plugin NAME VERSION"

    @property
    def description(self) -> str:
        return self.cls.description


class _Registry:
    # The one piece of process-wide state in charlm: a registry has to be shared so that a
    # plugin registered in one place is found in another (as simonw/llm's plugin manager is).
    def __init__(self) -> None:
        self._infos: dict[str, TokenizerInfo] = {}
        self._entry_points_loaded = False

    def add(self, cls: type[Tokenizer], source: str, name: str | None = None) -> None:
        name = name or cls.name
        if not name:
            raise TokenizerError(f"tokenizer class {cls.__name__} has no name")
        self._infos[name] = TokenizerInfo(name, cls, source)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        allowed = os.environ.get("CHARLM_LOAD_PLUGINS")
        allowed_names = None if allowed is None else {n for n in allowed.split(",") if n}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            if allowed_names is not None and (dist is None or dist.name not in allowed_names):
                continue
            source = f"plugin {dist.name} {dist.version}" if dist else f"plugin {ep.value}"
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must not break charlm itself
                raise TokenizerError(
                    f"tokenizer plugin {ep.name!r} ({source}) failed to load: {exc}"
                ) from exc
            if ep.name not in self._infos:
                self.add(cls, source, name=ep.name)

    def infos(self) -> list[TokenizerInfo]:
        self._load_entry_points()
        return sorted(self._infos.values(), key=lambda info: info.name)

    def get(self, name: str) -> type[Tokenizer]:
        if name not in self._infos:
            self._load_entry_points()
        if name not in self._infos:
            known = ", ".join(sorted(self._infos))
            raise TokenizerError(
                f"no tokenizer named {name!r} is installed (available: {known}); "
                "install the package that provides it"
            )
        return self._infos[name].cls


_REGISTRY = _Registry()


def register(cls: type[Tokenizer] | None = None, *, name: str | None = None) -> Any:
    """Register a tokenizer class; usable as `register(Cls)` or as a `@register` decorator."""

    def add(tokenizer_cls: type[Tokenizer]) -> type[Tokenizer]:
        _REGISTRY.add(tokenizer_cls, "registered in code", name=name)
        return tokenizer_cls

    return add(cls) if cls is not None else add


def get_tokenizer_class(name: str) -> type[Tokenizer]:
    """The class registered under `name`."""
    return _REGISTRY.get(name)


def available_tokenizers() -> list[TokenizerInfo]:
    """Every tokenizer charlm can use now, sorted by name."""
    return _REGISTRY.infos()


def tokenizer_from_state(name: str, state: dict[str, Any]) -> Tokenizer:
    """Rebuild a saved tokenizer by name."""
    return get_tokenizer_class(name).from_state(state)


def _register_builtins() -> None:
    from .char import CharTokenizer

    for cls in (CharTokenizer,):
        _REGISTRY.add(cls, "built in")


_register_builtins()
