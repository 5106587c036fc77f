"""The search results table for people (rich), and its form with inline thumbnails for terminals that show images."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from .terminal import preview_line

__all__ = ["hits_table", "preview_lines"]


def hits_table(title: str, hits: Sequence[Any]):
    """A ``rich.table.Table`` of one query's hits: rank, distance, label, path (folded, never cut).

    Args:
        title: the query as given, shown above the table.
        hits: ``SearchHit``s (anything with rank, distance, label and path).
    """
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("rank", justify="right")
    table.add_column("distance", justify="right")
    table.add_column("label")
    table.add_column("path", overflow="fold")
    for hit in hits:
        table.add_row(str(hit.rank), f"{float(hit.distance):.4f}", "" if hit.label is None else str(hit.label), hit.path)
    return table


def preview_lines(title: str, hits: Sequence[Any], protocol: str, size: int = 96) -> Iterator[str]:
    """The query's title, then one line per hit: its thumbnail inline, rank, distance, label and path.

    Args:
        title: the query as given.
        hits: ``SearchHit``s.
        protocol: ``"kitty"`` or ``"iterm2"`` (``detect_protocol``).
        size: the thumbnails' longer side in pixels.
    """
    yield title
    for hit in hits:
        label = "" if hit.label is None else f"  {hit.label}"
        yield preview_line(hit.path, f"{hit.rank:>3}  {float(hit.distance):.4f}{label}  {hit.path}", protocol, size=size)
