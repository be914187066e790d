"""The catalogue of downloadable books: `corpora/catalog.toml`, one table per name."""

from __future__ import annotations

import difflib
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from charlm.errors import CorpusError
from charlm.limits import MAX_CATALOG_BYTES, too_large

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CATALOG_VARIABLE = "CHARLM_CATALOG"
DEFAULT_CORPUS_DIR = Path("corpora")
# In a source checkout the catalogue sits in corpora/ beside the package.
_CHECKOUT_CATALOG = Path(__file__).resolve().parents[2] / "corpora" / "catalog.toml"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class Entry:
    """One downloadable book: where it comes from and what its bytes must hash to."""

    name: str
    title: str
    url: str
    size: int
    sha256: str
    author: str = ""
    licence: str = ""

    @property
    def filename(self) -> str:
        """The file it is saved as, in the corpus directory and on a mirror."""
        return f"{self.name}.txt"


def catalog_path() -> Path:
    """The catalogue in use: $CHARLM_CATALOG, else the checkout's, else ./corpora's."""
    override = os.environ.get(CATALOG_VARIABLE)
    if override:
        return Path(override)
    if _CHECKOUT_CATALOG.is_file():
        return _CHECKOUT_CATALOG
    return DEFAULT_CORPUS_DIR / "catalog.toml"


def load_catalog(path: str | os.PathLike | None = None) -> dict[str, Entry]:
    """Every catalogue entry by name, checked for the fields a download needs."""
    path = Path(path) if path is not None else catalog_path()
    try:
        tables = tomllib.loads(_read(path))
    except FileNotFoundError as exc:
        raise CorpusError(f"no book catalogue at {path}; set {CATALOG_VARIABLE}") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CorpusError(f"the book catalogue {path} is unreadable: {exc}") from exc
    return {name: _entry(name, table, path) for name, table in tables.items()}


def _read(path: Path) -> str:
    """The catalogue's text; a device, a FIFO or a huge file is refused before reading."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise CorpusError(f"the book catalogue {path} is not a regular file")
    if info.st_size > MAX_CATALOG_BYTES:
        raise CorpusError(too_large(f"the book catalogue {path}", info.st_size, MAX_CATALOG_BYTES))
    return path.read_text(encoding="utf-8")


def _entry(name: str, table: object, path: Path) -> Entry:
    where = f"{path} [{name}]"
    if not _NAME.fullmatch(name):
        raise CorpusError(f"{where}: names are lower-case letters, digits, '.', '_' and '-'")
    if not isinstance(table, dict):
        raise CorpusError(f"{where} must be a table")
    try:
        entry = Entry(
            name=name,
            title=str(table["title"]),
            url=str(table["url"]),
            size=int(table["size"]),
            sha256=str(table["sha256"]).lower(),
            author=str(table.get("author", "")),
            licence=str(table.get("licence", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorpusError(f"{where} is missing or has a bad field: {exc}") from exc
    if not _SHA256.fullmatch(entry.sha256):
        raise CorpusError(f"{where}: sha256 must be 64 hexadecimal digits")
    return entry


def did_you_mean(name: str, catalog: dict[str, Entry]) -> str:
    """ "; did you mean 'x'?" when `name` is close to a catalogue name, else nothing."""
    close = difflib.get_close_matches(name.lower(), list(catalog), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def find_entry(name: str, catalog: dict[str, Entry] | None = None) -> Entry | None:
    """The entry called `name`, or None."""
    catalog = load_catalog() if catalog is None else catalog
    return catalog.get(name)
