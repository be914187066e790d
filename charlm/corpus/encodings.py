"""Bytes → text: byte-order marks, binary formats, and encoding detection.

Detection order: a byte-order mark decides; otherwise strict UTF-8 (valid UTF-8 is almost never
anything else); otherwise charset-normalizer's candidates, each checked by decoding the whole
file strictly.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass

from charset_normalizer import from_bytes

from charlm.errors import ConfigError, CorpusError

# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_MAGIC = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"\x7fELF", "an executable"),
    (b"\x93NUMPY", "a NumPy array file"),
)

# charset-normalizer scores some encodings exactly alike on ordinary text (cp1250 and cp1252
# on English, for instance, differ only in rarely used letters). Ties go to the encoding that
# is far more common for that kind of text, and GBK is read as its superset GB18030.
_PREFERRED = ("utf_8", "gb18030", "big5", "shift_jis", "euc_kr", "cp1252", "latin_1", "cp1251")
_CHAOS_TOLERANCE = 0.03
_SUPERSETS = {"gbk": "gb18030", "gb2312": "gb18030", "ascii": "utf_8"}


@dataclass(frozen=True)
class Decoded:
    """Text and how it was decoded."""

    text: str
    encoding: str  # Python's canonical codec name, e.g. "utf-8", "cp1252", "gb18030"
    bom: bool
    detected: bool  # False when the caller forced the encoding


_NUL_BINARY = "a binary file"
# UTF-16/32 text is full of NUL bytes; with one of these marks they are no sign of a binary.
_WIDE_BOMS = tuple(bom for bom, name in _BOMS if name != "utf-8")


def binary_kind(data: bytes, *, nul_means_binary: bool = True) -> str | None:
    """What binary format `data` (the bytes of a file) is, if any.

    A NUL byte anywhere marks a binary file, unless the file starts with a UTF-16/32
    byte-order mark or `nul_means_binary` is False (the caller named an encoding, such as
    UTF-16 without a byte-order mark, in which NUL bytes are normal).
    """
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    # The whole file, not just its head: a NUL past the first pages would otherwise reach
    # the training text. `in` on bytes is one scan in C (memchr).
    if nul_means_binary and not data.startswith(_WIDE_BOMS) and b"\x00" in data:
        return _NUL_BINARY
    return None


def canonical_encoding(name: str) -> str:
    """Python's own name for an encoding, or a ConfigError naming the bad one."""
    try:
        codec = codecs.lookup(name)
    except LookupError as exc:
        raise ConfigError(f"unknown encoding {name!r}; use e.g. utf-8, cp1252, gb18030") from exc
    # rot13, base64, zlib and the like turn bytes into bytes (or str into str), not into text;
    # "undefined" refuses every byte.
    if not getattr(codec, "_is_text_encoding", True) or codec.name == "undefined":
        raise ConfigError(f"{name!r} is not a text encoding; use e.g. utf-8, cp1252, gb18030")
    return codec.name


def decode(raw: bytes, where: str, encoding: str | None = None) -> Decoded:
    """Decode `raw` with `encoding`, or detect it. `where` names the file in errors."""
    kind = binary_kind(raw, nul_means_binary=encoding is None)
    if kind == _NUL_BINARY:
        raise CorpusError(
            f"{where} looks like a binary file, not text (if it is UTF-16 or UTF-32 without a "
            "byte-order mark, name the encoding with --encoding)"
        )
    if kind is not None:
        raise CorpusError(f"{where} is {kind}, a binary file, not text; give a plain text file")
    if encoding is not None:
        return _decode_forced(raw, where, canonical_encoding(encoding))
    for bom, name in _BOMS:
        if raw.startswith(bom):
            return Decoded(
                _strict(raw, name, where, forced=False), codecs.lookup(name).name, True, True
            )
    try:
        return Decoded(raw.decode("utf-8"), "utf-8", False, True)
    except UnicodeDecodeError:
        pass
    for name in _candidates(raw):
        try:
            return Decoded(raw.decode(name), codecs.lookup(name).name, False, True)
        except (UnicodeDecodeError, LookupError):
            continue
    raise CorpusError(
        f"{where}: cannot tell its text encoding; name it with --encoding (e.g. cp1252, gb18030)"
    )


def _decode_forced(raw: bytes, where: str, encoding: str) -> Decoded:
    # utf-8-sig, utf-16 and utf-32 remove their mark (either byte order) while decoding, so
    # the bytes are asked whether there was one.
    family = "utf-8" if encoding == "utf-8-sig" else encoding
    has_bom = any(raw.startswith(b) for b, name in _BOMS if codecs.lookup(name).name == family)
    text = _strict(raw, encoding, where, forced=True)
    if text.startswith("\ufeff"):  # utf-8 forced on a file that has a UTF-8 mark
        text, has_bom = text[1:], True
    return Decoded(text, encoding, has_bom, False)


def _strict(raw: bytes, encoding: str, where: str, *, forced: bool) -> str:
    try:
        text = raw.decode("utf-8-sig" if encoding in ("utf-8", "utf_8") else encoding)
    except UnicodeDecodeError as exc:
        hint = "check --encoding" if forced else "name the right one with --encoding"
        raise CorpusError(f"{where} is not valid {encoding} (byte {exc.start}); {hint}") from exc
    return text


def _candidates(raw: bytes) -> list[str]:
    """Encodings worth a strict full decode, most likely first."""
    matches = list(from_bytes(raw))
    if not matches:
        return []
    least_chaos = min(m.chaos for m in matches)
    ranked = []
    for match in matches:
        # Encodings that decode these bytes to identical text are grouped into one match;
        # name it by the most common of them.
        names = [_SUPERSETS.get(n, n) for n in (match.encoding, *match.could_be_from_charset)]
        name = min(names, key=_preference)
        # On short texts the scores of similar single-byte codecs lie close together; there
        # the far more common encoding is the better bet.
        close = match.chaos <= least_chaos + _CHAOS_TOLERANCE
        ranked.append(((not close, _preference(name), match.chaos, -match.coherence), name))
    return list(dict.fromkeys(name for _, name in sorted(ranked)))


def _preference(name: str) -> int:
    return _PREFERRED.index(name) if name in _PREFERRED else len(_PREFERRED)


# Characters from the start of a text that the checks for control characters read.
TEXT_SAMPLE = 200_000


def looks_like_text(text: str, sample: int = TEXT_SAMPLE) -> bool:
    """False when 1% or more of the start of `text` is control characters (or U+FFFD): a
    mis-decoded binary, or text read in the wrong encoding."""
    return control_share(text, sample) < 0.01


def control_share(text: str, sample: int = TEXT_SAMPLE) -> float:
    """The share of control characters (bar line breaks and tabs) and U+FFFD among the first
    `sample` characters of `text`; 1.0 for no text."""
    head = text[:sample]
    if not head:
        return 1.0
    controls = sum(
        1 for c in head if c not in "\n\r\t\f\v" and unicodedata.category(c) in ("Cc", "Cs")
    )
    return (controls + head.count("\ufffd")) / len(head)
