"""Limits on a Hugging Face tokenizer pipeline that came from a file or a checkpoint.

A `tokenizer.json` holds no code, but its pieces can still be turned against the reader:

* a normaliser is a chain of steps, and a chain of `Replace("e", "ee")` doubles every "e" at
  each step: forty steps, a few hundred bytes of JSON, ask for terabytes;
* a regular expression (a `Split` pre-tokenizer, a `Replace` pattern) such as `(a+)+$` makes
  the regex engine backtrack exponentially — it gives up with a Rust panic, which Python sees
  as a `BaseException`, not an `Exception` — and one that backtracks only polynomially runs
  for hours on a book;
* padding and truncation settings would pad every slice to a billion ids or silently cut it.

So, when such a pipeline is loaded, `PipelineLimits`:

* refuses a regular expression that repeats a group holding a quantifier or an alternation
  (`(a+)+`, `(a|ab)*`, `(a?){30}`), the shape of exponential backtracking;
* bounds how much each normaliser step can lengthen a text (refusing a step that could make
  it more than MAX_NORMALIZER_STEP_GROWTH times longer) and, when the steps together could
  lengthen it more than MAX_NORMALIZED_GROWTH times, runs them one by one on each text first
  and refuses the text as soon as it has grown past that;
* refuses a decoder whose steps together could lengthen text more than that;
* refuses a `FixedLength` pre-tokenizer of length 0, on which the library panics (printing
  a screenful of Rust backtrace before the panic can become an error);
* drops padding and truncation;

and each encoding has a deadline (ENCODE_GRACE_SECONDS plus one second per MIN_ENCODE_RATE
characters) after which it is abandoned with an error, and a panic becomes a TokenizerError.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tokenizers import Tokenizer as HFPipeline

from charlm import limits
from charlm.errors import TokenizerError

T = TypeVar("T")

# The longest text one character can become (measured over every code point with Python's
# unicodedata; the Rust library follows the same Unicode tables).
_UNICODE_FORMS = {"NFC": 3, "NFD": 4, "NFKC": 18, "NFKD": 18}
_LOWERCASE = 2
_SHRINKING = {"Strip", "StripAccents", "Nmt"}
# Decoders that only remove or replace text, and those that may add a space per token.
_DECODERS_KEEP = {"ByteFallback", "ByteLevel", "CTC", "Fuse", "Strip"}
_DECODERS_SPACE = {"BPEDecoder", "Metaspace", "WordPiece"}
_MINIMAL_MODEL = {"type": "WordLevel", "vocab": {"x": 0}, "unk_token": "x"}


class PipelineLimits:
    """What may run of one pipeline: checked when it is loaded, enforced when it encodes."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        for pattern in _regexes(spec):
            _check_regex(pattern)
        for step in _steps(spec.get("pre_tokenizer"), "pretokenizers"):
            _check_pre_tokenizer(step)
        steps = _steps(spec.get("normalizer"), "normalizers")
        growth = math.prod(_normalizer_growth(step) for step in steps)
        # Within the bound the library may normalise on its own; past it, step by step.
        self._steps = _step_normalizers(steps) if growth > limits.MAX_NORMALIZED_GROWTH else []
        decoding = math.prod(_decoder_growth(s) for s in _steps(spec.get("decoder"), "decoders"))
        if decoding > limits.MAX_NORMALIZED_GROWTH:
            raise TokenizerError(
                f"the tokenizer's decoder could make text {decoding:,.0f} times longer than its "
                f"tokens (charlm allows {limits.MAX_NORMALIZED_GROWTH}); it is not usable"
            )

    def check_growth(self, texts: list[str]) -> None:
        """Refuse texts the normaliser would lengthen more than MAX_NORMALIZED_GROWTH times,
        before the library normalises them all at once."""
        for text in texts:
            allowed = limits.MAX_NORMALIZED_GROWTH * len(text) + limits.NORMALIZED_EXTRA_CHARS
            normalized = text
            for step in self._steps:
                with panics_as_errors(f"the {self.name} tokenizer failed"):
                    normalized = step.normalize_str(normalized)
                if len(normalized) > allowed:
                    raise TokenizerError(
                        f"the {self.name} tokenizer's normaliser makes a text of {len(text):,} "
                        f"characters more than {limits.MAX_NORMALIZED_GROWTH} times longer; "
                        "its tokenizer.json is not usable"
                    )

    def encode(self, work: Callable[[], T], characters: int) -> T:
        """`work()` (encoding `characters` characters), abandoned at its deadline.

        The library cannot be interrupted, so it runs in a daemon thread that is left to
        finish on its own (or with the process) when the deadline passes.
        """
        seconds = limits.ENCODE_GRACE_SECONDS + characters / limits.MIN_ENCODE_RATE
        outcome: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                outcome.append((True, work()))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append((False, exc))

        thread = threading.Thread(target=run, name=f"charlm-{self.name}-encode", daemon=True)
        thread.start()
        thread.join(seconds)
        if not outcome:
            raise TokenizerError(
                f"the {self.name} tokenizer took more than {seconds:,.0f} s to encode "
                f"{characters:,} characters (charlm expects at least "
                f"{limits.MIN_ENCODE_RATE:,} a second); a pattern in its tokenizer.json "
                "backtracks too much: use another tokenizer"
            )
        finished, value = outcome[0]
        if finished:
            return value
        with panics_as_errors(f"the {self.name} tokenizer failed"):
            raise value


@contextlib.contextmanager
def panics_as_errors(what: str) -> Iterator[None]:
    """Turn a Rust panic inside the library (pyo3's PanicException, a BaseException) into a
    TokenizerError; every other exception passes through."""
    try:
        yield
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        text = str(exc).strip().splitlines()
        raise TokenizerError(f"{what}: {text[0] if text else 'a panic in Rust'}") from None


def _regexes(node: Any) -> Iterator[str]:
    """Every regular expression in a pipeline's JSON (serialised as {"Regex": pattern})."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Regex" and isinstance(value, str):
                yield value
            else:
                yield from _regexes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _regexes(item)


def _steps(node: Any, key: str) -> list[dict[str, Any]]:
    """A normaliser's or decoder's steps in order, nested sequences flattened."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        return [step for child in node.get(key) or [] for step in _steps(child, key)]
    return [node]


def _replace_growth(step: dict[str, Any]) -> float:
    """How many times longer a Replace step can make a text."""
    content = step.get("content")
    added = len(content) if isinstance(content, str) else 0
    pattern = step.get("pattern") or {}
    string = pattern.get("String") if isinstance(pattern, dict) else None
    if isinstance(string, str) and string:
        return max(1.0, added / len(string))  # each match of len(string) becomes `content`
    return 1.0 + added  # a regex may match the empty string at every position


def _normalizer_growth(step: dict[str, Any]) -> float:
    kind = step.get("type")
    if kind in _UNICODE_FORMS:
        growth = _UNICODE_FORMS[kind]
    elif kind == "Lowercase":
        growth = _LOWERCASE
    elif kind in _SHRINKING:
        growth = 1
    elif kind == "ByteLevel":
        growth = 4  # a character becomes its (at most 4) UTF-8 bytes
    elif kind == "BertNormalizer":
        growth = 3 * _UNICODE_FORMS["NFD"] * _LOWERCASE  # CJK padded with spaces, accents
    elif kind == "Replace":
        growth = _replace_growth(step)
    elif kind == "Prepend":
        growth = 1 + len(step.get("prepend") or "")
    elif kind == "Precompiled":
        growth = _precompiled_growth(step.get("precompiled_charsmap"))
    else:  # a step this charlm does not know: checked on every text, step by step
        growth = limits.MAX_NORMALIZER_STEP_GROWTH
    if growth > limits.MAX_NORMALIZER_STEP_GROWTH:
        raise TokenizerError(
            f"the tokenizer's {kind} normaliser could make text {growth:,.0f} times longer "
            f"in one step (charlm allows {limits.MAX_NORMALIZER_STEP_GROWTH}); it is not usable"
        )
    return growth


def _precompiled_growth(charsmap: Any) -> float:
    """The longest replacement in a SentencePiece character map: after a 4-byte trie size and
    the trie come the replacements, NUL-terminated."""
    try:
        blob = base64.b64decode(charsmap or b"", validate=True)
    except (TypeError, ValueError):
        return limits.MAX_NORMALIZER_STEP_GROWTH + 1.0
    trie_size = int.from_bytes(blob[:4], "little")
    pool = blob[4 + trie_size :]
    return max([1, *(len(s.decode("utf-8", "replace")) for s in pool.split(b"\0"))])


def _decoder_growth(step: dict[str, Any]) -> float:
    kind = step.get("type")
    if kind == "Replace":
        return _replace_growth(step)
    if kind in _DECODERS_KEEP:
        return 1
    return 2 if kind in _DECODERS_SPACE else limits.MAX_NORMALIZED_GROWTH + 1


def _step_normalizers(steps: list[dict[str, Any]]) -> list[Any]:
    """Each step as a normaliser of its own, to be applied one at a time."""
    normalizers = []
    for step in steps:
        spec = {"version": "1.0", "model": _MINIMAL_MODEL, "normalizer": step}
        with panics_as_errors("the tokenizer's normaliser is not usable"):
            normalizers.append(HFPipeline.from_str(json.dumps(spec)).normalizer)
    return normalizers


def _check_pre_tokenizer(step: dict[str, Any]) -> None:
    if step.get("type") == "FixedLength" and step.get("length") == 0:
        raise TokenizerError(
            "the tokenizer's FixedLength pre-tokenizer has length 0, on which the library "
            "fails; a length of 1 or more is needed"
        )


def _check_regex(pattern: str) -> None:
    if _repeats_a_repetition(pattern):
        raise TokenizerError(
            f"the tokenizer's regular expression {pattern[:60]!r} repeats a group that itself "
            "repeats or alternates (like (a+)+), which can take exponential time; charlm does "
            "not run it"
        )


def _repeats_a_repetition(pattern: str) -> bool:
    """Whether a repeated group of `pattern` holds a quantifier or an alternation."""
    risky = [False]  # per open group: it holds a quantifier or an alternation
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "(":
            risky.append(False)
            i = _skip_group_prefix(pattern, i + 1)
            continue
        if char == ")" and len(risky) > 1:
            inner = risky.pop()
            repeats, i = _quantifier(pattern, i + 1)
            if inner and repeats:
                return True
            risky[-1] |= inner or repeats is not None
            continue
        if char == "|":
            risky[-1] = True
            i += 1
            continue
        i = _skip_atom(pattern, i)
        repeats, i = _quantifier(pattern, i)
        risky[-1] |= repeats is not None
    return False


def _skip_group_prefix(pattern: str, i: int) -> int:
    """Past "?:", "?=", "?<name>", "?i:" and the like after a "("."""
    if not pattern.startswith("?", i):
        return i
    i += 1
    if pattern.startswith("<", i) and not pattern.startswith(("<=", "<!"), i):
        return pattern.find(">", i) + 1 or len(pattern)
    while i < len(pattern) and pattern[i] not in ":)":
        if pattern[i] in "=!>":
            return i + 1
        i += 1
    return i + 1 if pattern.startswith(":", i) else i


def _skip_atom(pattern: str, i: int) -> int:
    """Past one character, escape (\\p{L} included) or character class."""
    if pattern[i] == "\\":
        if pattern[i + 1 : i + 2] in ("p", "P", "x", "u", "k", "g") and pattern.startswith(
            "{", i + 2
        ):
            return pattern.find("}", i) + 1 or len(pattern)
        return i + 2
    if pattern[i] == "[":
        depth, i = 1, i + 1
        if pattern.startswith("^", i):
            i += 1
        if pattern.startswith("]", i):
            i += 1  # a "]" first in a class is a character
        while i < len(pattern) and depth:
            if pattern[i] == "\\":
                i += 1
            elif pattern[i] == "[":
                depth += 1
            elif pattern[i] == "]":
                depth -= 1
            i += 1
        return i
    return i + 1


def _quantifier(pattern: str, i: int) -> tuple[bool | None, int]:
    """(whether it repeats — None when there is no quantifier at `i` —, the index past it)."""
    if i >= len(pattern):
        return None, i
    char = pattern[i]
    if char in "*+":
        repeats, end = True, i + 1
    elif char == "?":
        repeats, end = False, i + 1
    elif char == "{":
        close = pattern.find("}", i)
        low, comma, high = pattern[i + 1 : close].partition(",") if close > 0 else ("x", "", "")
        if not (low or high) or not (low or "0").isdigit() or (high and not high.isdigit()):
            return None, i  # a literal "{"
        repeats = (comma and not high) or int(high or low) > 1
        end = close + 1
    else:
        return None, i
    if pattern.startswith(("?", "+"), end):  # lazy or possessive
        end += 1
    return bool(repeats), end
