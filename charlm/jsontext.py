"""JSON text for the files charlm writes: readable UTF-8 that any string can go into.

`json.dumps(..., ensure_ascii=False)` keeps accented letters and CJK readable in config.json,
but a Python string may hold lone surrogates (a file name with bytes that are not UTF-8
becomes one), which UTF-8 cannot encode. Those are written as `\\udcff` escapes, which JSON
readers turn back into the same string, so such a path survives a save and a resume exactly.
"""

from __future__ import annotations

import json
import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(value: Any, **options: Any) -> str:
    """`value` as JSON text that encodes to UTF-8 whatever strings it holds."""
    text = json.dumps(value, ensure_ascii=False, **options)
    # Outside string literals JSON has only ASCII, so every surrogate here sits inside one,
    # where an escape means the same code point.
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
