"""Image files charlm draws (training curves, confusion matrices): which names it can write."""

from __future__ import annotations

import os
from pathlib import Path

from charlm.errors import ConfigError


def check_image_path(out: str | os.PathLike, flag: str) -> None:
    """ConfigError unless matplotlib writes an image of `out`'s extension (one without an
    extension is written as PNG); checked before the work the image shows, not after it.
    Without matplotlib nothing is checked: drawing says what to install."""
    suffix = Path(out).suffix
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        return
    kinds = FigureCanvasAgg.get_supported_filetypes()
    if suffix and suffix[1:].lower() not in kinds:
        known = ", ".join(f".{kind}" for kind in sorted(kinds))
        raise ConfigError(f"cannot write a {suffix} image; end {flag} in one of {known}")
