"""What an engine reports for each file it was given."""

from __future__ import annotations

from typing import Any, NamedTuple

ENGINES = ("local", "ray")


class Outcome(NamedTuple):
    """One file's result.

    Attributes:
        index: the file's position in the list the engine was given.
        content_hash: the file's content hash; None when it could not be read.
        vector: its float32 embedding; None when it was not decoded (an error, or a content
            hash the store already holds, whose vector is reused).
        error: why the file is skipped, or None.
    """

    index: int
    content_hash: str | None
    vector: Any
    error: str | None
