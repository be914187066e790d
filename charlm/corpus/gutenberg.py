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
# The markers sit within the first and last few thousand characters (the longest old-style
# licence is ~20k); searching only there keeps a 100 MB corpus from being scanned twice.
_WINDOW = 200_000


def strip_boilerplate(text: str) -> str:
    """`text` without the Project Gutenberg header and footer; unchanged if it has neither."""
    start_match = _START.search(text, 0, _WINDOW)
    start = start_match.end() if start_match else 0
    end_match = _END.search(text, max(start, len(text) - _WINDOW))
    end = end_match.start() if end_match else len(text)
    if end_match:
        near = [m.start() for m in _END_LINE.finditer(text, max(start, end - _END_LINE_REACH), end)]
        end = near[-1] if near else end
    if start == 0 and end == len(text):
        return text
    body = text[start:end].strip("\n")
    return body + "\n" if body else ""
