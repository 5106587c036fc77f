"""The one label rule: a file's label is the first folder below the root it was found under.

``photos/cats/2024/a.jpg`` embedded from ``photos`` is labelled ``cats``, the class folder,
however deep the file lies inside it; a file directly in the root has no label. ``train``
and ``eval DIR`` read class folders by the same rule, so ``eval --store`` and ``eval DIR``
agree on nested folders. A store records the folders it was embedded from (its roots);
when they nest, the outermost one that holds a file labels it.
"""

from __future__ import annotations

import os
from typing import Iterable

__all__ = ["label_for", "root_of"]


def label_for(path: str, root: str) -> str | None:
    """The label of ``path`` (absolute) found under ``root`` (absolute): its first folder below the root, else None."""
    relative = os.path.relpath(path, root)
    first, sep, _ = relative.partition(os.sep)
    if not sep or first in (os.curdir, os.pardir):
        return None
    return first


def root_of(path: str, roots: Iterable[str]) -> str | None:
    """The outermost of ``roots`` that is ``path`` or holds it, or None (all paths absolute)."""
    holding = [root for root in roots if path == root or path.startswith(root.rstrip(os.sep) + os.sep)]
    return min(holding, key=len) if holding else None
