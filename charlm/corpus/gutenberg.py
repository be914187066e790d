"""Project Gutenberg boilerplate: the header and licence around the `*** START/END ***` markers.

Both marker styles are recognised:

    *** START OF THIS PROJECT GUTENBERG EBOOK PRIDE AND PREJUDICE ***      (older files)
    *** START OF THE PROJECT GUTENBERG EBOOK A ROOM WITH A VIEW ***        (current files)

and the "End of the Project Gutenberg EBook of ..." line that older files put just before the
end marker goes with the footer.
"""

from __future__ import annotations

import re

_START = re.compile(
    r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK[^\n]*\n", re.IGNORECASE | re.M
)
_END = re.compile(r"^\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK", re.IGNORECASE | re.M)
_END_LINE = re.compile(r"^End of (?:the )?Project Gutenberg", re.IGNORECASE | re.M)
# How far before the end marker an "End of the Project Gutenberg EBook" line may stand.
_END_LINE_REACH = 600
# Every marker begins a line with these: the whole text is searched for them with str.find
# (a scan in C), and the regular expressions are tried only where they stand.
_MARK = "***"


def strip_boilerplate(text: str) -> str:
    """`text` without the Project Gutenberg header and footer; unchanged if it has neither.

    Several books in one file (files joined end to end) each keep their own text between
    their markers; the licence and header between them go.
    """
    markers = _markers(text)
    if not markers:
        return text
    bodies, body_start = [], 0 if markers[0][0] == "end" else None
    for kind, match in markers:
        if kind == "start":
            if body_start is not None:  # a book without its end marker: it ends here
                bodies.append(text[body_start : match.start()])
            body_start = match.end()
        elif body_start is not None:  # an end marker without a start before it is ignored
            bodies.append(text[body_start : _body_end(text, body_start, match.start())])
            body_start = None
    if body_start is not None:
        bodies.append(text[body_start:])
    kept = [body.strip("\n") for body in bodies]
    joined = "\n\n".join(body for body in kept if body)
    return joined + "\n" if joined else ""


def _markers(text: str) -> list[tuple[str, re.Match]]:
    """The start and end markers of `text`, in order."""
    found = []
    at = text.find(_MARK)
    while at != -1:
        if at == 0 or text[at - 1] == "\n":
            for kind, pattern in (("start", _START), ("end", _END)):
                if match := pattern.match(text, at):
                    found.append((kind, match))
        at = text.find(_MARK, at + len(_MARK))
    return found


def _body_end(text: str, body_start: int, end_marker: int) -> int:
    """Where a book's text ends: at its end marker, or at the "End of the Project Gutenberg
    EBook" line just before it."""
    reach = max(body_start, end_marker - _END_LINE_REACH)
    near = [m.start() for m in _END_LINE.finditer(text, reach, end_marker)]
    return near[-1] if near else end_marker
