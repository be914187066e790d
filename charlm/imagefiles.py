"""Image files charlm draws (training curves, confusion matrices): which names it can write."""

from __future__ import annotations

import os
from pathlib import Path

from charlm.errors import ConfigError


def check_image_path(out: str | os.PathLike, flag: str) -> Path:
    """The file an image asked for as `out` is written to: `out`, or `out`.png where it has no
    extension (as matplotlib writes it, so that "wrote ..." names the real file). ConfigError
    unless matplotlib writes an image of `out`'s extension; checked before the work the image
    shows, not after it. Without matplotlib nothing is checked: drawing says what to install."""
    path = Path(out)
    suffix = path.suffix
    if not suffix:
        path = path.with_name(path.name + ".png")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        return path
    kinds = FigureCanvasAgg.get_supported_filetypes()
    if suffix and suffix[1:].lower() not in kinds:
        known = ", ".join(f".{kind}" for kind in sorted(kinds))
        raise ConfigError(f"cannot write a {suffix} image; end {flag} in one of {known}")
    return path
