"""``Outcome``: what an embed engine made of one file, for the store's writer."""

from __future__ import annotations

from typing import Any, NamedTuple


class Outcome(NamedTuple):
    """One file to embed, done.

    Attributes:
        index: the file's position in the list the engine was given.
        content_hash: ``content_hash`` of the file's bytes; None when it could not be read.
        vector: float32 (dim,) numpy array; None when the file was skipped (``error``) or when the
            store already holds this content (a hash, no error: reuse the stored vector).
        error: why the file is skipped (the local engine's wording), else None.
    """

    index: int
    content_hash: str | None
    vector: Any
    error: str | None
