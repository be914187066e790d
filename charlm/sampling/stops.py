"""Stop strings: end a sample where one appears, without ever emitting any of it."""

from __future__ import annotations

from collections.abc import Sequence

from charlm.errors import ConfigError

ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """`text` with \\n, \\t and \\\\ turned into a newline, a tab and a backslash."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ESCAPES:
            out.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_stop(text: str) -> str:
    """A stop string as typed (on the command line, at the prompt): \\n is a newline."""
    # Python passes bytes that are not UTF-8 on as lone surrogates, which no tokenizer takes.
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise ConfigError("is not valid UTF-8 text; check the terminal's encoding")
    return unescape(text)


class StopScanner:
    """Filters one sample's stream of text pieces.

    Text that could be the start of a stop string is held back until the next pieces show
    whether the stop string follows, so a stop string spread over several tokens is still cut
    off whole and never half-printed.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._pending = ""
        self.stopped: str | None = None  # the stop string that ended the sample, if one did

    def feed(self, piece: str) -> str:
        """Add newly generated text; return the part that is safe to emit now."""
        if not self._stops or not piece:
            return piece
        text = self._pending + piece
        found = [(text.find(stop), stop) for stop in self._stops if stop in text]
        if found:
            start, self.stopped = min(found)
            self._pending = ""
            return text[:start]
        keep = self._held_back(text)
        self._pending = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The text still held back when the sample ends without a stop string."""
        text, self._pending = self._pending, ""
        return text

    def _held_back(self, text: str) -> int:
        """Length of the longest end of `text` that begins some stop string."""
        longest = max(len(stop) for stop in self._stops) - 1
        for size in range(min(longest, len(text)), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
