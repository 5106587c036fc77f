"""Text outputs for pipelines: paths one a line (``--paths``) and JSON lines (``--json``)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Sequence

from ..errors import VecmetricError

HIT_FIELDS = ("query", "rank", "path", "distance", "label", "id")


def hit_record(hit: Any) -> dict[str, Any]:
    """One search result as the ``--json`` object: ``query, rank, path, distance, label, id``, in that order."""
    return {
        "query": hit.query,
        "rank": int(hit.rank),
        "path": hit.path,
        "distance": float(hit.distance),
        "label": hit.label,
        "id": int(hit.id),
    }


def json_lines(results: Iterable[Sequence[Any]]) -> Iterator[str]:
    """One JSON object a line (no newline) for every hit of every query, in order; non-ASCII kept as is."""
    for hits in results:
        for hit in hits:
            yield json.dumps(hit_record(hit), ensure_ascii=False)


def path_lines(results: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The path of every hit of every query, in order (repeats kept), one a line for ``xargs``.

    Raises:
        VecmetricError: a path holds a line break, which would split it in two for ``xargs``.
    """
    for hits in results:
        for hit in hits:
            if "\n" in hit.path or "\r" in hit.path:
                raise VecmetricError(f"path {hit.path!r} holds a line break, so --paths cannot print it", hint="use --json")
            yield hit.path
