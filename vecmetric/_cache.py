"""The per-user cache folder: exported query models and thumbnails that belong to no store.

``$VECMETRIC_CACHE_DIR`` overrides it; otherwise the platform's cache folder is used
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows), with a ``vecmetric`` folder inside.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "VECMETRIC_CACHE_DIR"


def user_cache_dir(*parts: str) -> Path:
    """The cache folder (or a folder inside it, named by ``parts``); not created here."""
    override = os.environ.get(CACHE_ENV)
    if override:
        base = Path(override).expanduser()
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "vecmetric"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "vecmetric" / "Cache"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vecmetric"
    return base.joinpath(*parts)
