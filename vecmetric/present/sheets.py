"""Contact sheets: a neutral model that search and dedup fill, and its self-contained HTML form.

One ``SheetRow`` per query (its image, then the results) or per duplicate group (the keeper
``marked``). ``write_html_sheet`` embeds every thumbnail as a ``data:`` URI and its CSS inline, so
the file opens anywhere with no request leaving it (its Content-Security-Policy forbids any).
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .._fsutil import atomic_write_text
from ..images import ImageDecodeError
from .thumbnails import encode_thumbnail, make_thumbnail

MIN_SIZE, MAX_SIZE = 16, 512
DEFAULT_SIZE = 160


@dataclass
class SheetItem:
    """One picture on a sheet.

    ``path`` None draws a text-only cell (a text query). ``link`` None links to ``path`` as a
    ``file://`` URI; ``""`` means no link.
    """

    path: str | None
    caption: list[str] = field(default_factory=list)
    link: str | None = None
    marked: bool = False

    def href(self) -> str:
        if self.link is not None:
            return self.link
        return file_uri(self.path) if self.path else ""


@dataclass
class SheetRow:
    """A titled line of pictures: ``query_images`` first (set apart), then ``items``."""

    title: str
    query_images: list[SheetItem] = field(default_factory=list)
    items: list[SheetItem] = field(default_factory=list)


@dataclass
class Sheet:
    title: str
    rows: list[SheetRow] = field(default_factory=list)


def file_uri(path: str | os.PathLike) -> str:
    """``path`` (made absolute) as a percent-encoded ``file://`` URI."""
    return Path(os.path.abspath(path)).as_uri()


def hit_caption(hit: Any) -> list[str]:
    """The caption lines of one search result: ``#rank  distance`` and the label."""
    return [f"#{hit.rank}  {float(hit.distance):.4f}", "" if hit.label is None else str(hit.label)]


def search_sheet(queries: Sequence[str], results: Sequence[Sequence[Any]], *, text: bool = False, title: str = "vecmetric search") -> Sheet:
    """A sheet with one row per query: the query image (or its text), then its hits.

    Args:
        queries: the query paths (or texts, with ``text``), in the order ``results`` follows.
        results: per query, its ``SearchHit``s (anything with rank, distance, label and path).
        text: the queries are texts, shown as text cells.
        title: the sheet's title.
    """
    rows = []
    for query, hits in zip(queries, results):
        query_item = SheetItem(None if text else query, ["query"] if not text else ["text query", query], link=None if not text else "")
        items = [SheetItem(hit.path, hit_caption(hit)) for hit in hits]
        rows.append(SheetRow(query, [query_item], items))
    return Sheet(title, rows)


def dedup_sheet(groups: Sequence[Any], *, title: str = "vecmetric dedup") -> Sheet:
    """A sheet with one row per duplicate group: its files, the keeper first and ``marked``.

    Args:
        groups: ``vecmetric.dedup.Group`` objects (anything with ``group``, ``kind`` and
            ``members`` that have ``path``, ``distance`` and ``keep``), keeper first.
        title: the sheet's title.
    """
    rows = []
    for g in groups:
        items = [SheetItem(m.path, [f"{'keep' if m.keep else 'move'}  {float(m.distance):.4f}", os.path.basename(m.path)], marked=bool(m.keep) and i == 0) for i, m in enumerate(g.members)]
        rows.append(SheetRow(f"group {g.group}: {g.kind}, {len(g.members)} files", [], items))
    return Sheet(title, rows)


def _term_caption(term: Any, alone: bool) -> list[str]:
    weight = float(term.weight)
    lines = ["query"] if alone else [f"{'+' if weight > 0 else '-'} {abs(weight):g}x"]
    if getattr(term, "row_id", None) is not None and not getattr(term, "embedded", True):
        lines.append(f"stored @{term.row_id}")
    return lines


def results_sheet(results: Sequence[Any], *, title: str = "vecmetric search") -> Sheet:
    """A sheet with one row per query result: a cell per query term (its image, or its text), then the hits.

    Args:
        results: ``QueryResult``s: each has ``source`` (the query as given), ``terms`` (with ``weight`` and
            ``path`` or ``text``, and ``row_id``/``embedded`` for stored images) and is a sequence of hits.
        title: the sheet's title.
    """
    rows = []
    for result in results:
        terms = list(result.terms)
        alone = len(terms) == 1 and float(terms[0].weight) == 1.0
        cells = []
        for term in terms:
            if term.path is None:
                cells.append(SheetItem(None, [*_term_caption(term, alone), f"text: {term.text}"], link=""))
            else:
                cells.append(SheetItem(term.path, _term_caption(term, alone)))
        rows.append(SheetRow(result.source, cells, [SheetItem(hit.path, hit_caption(hit)) for hit in result]))
    return Sheet(title, rows)


def check_size(size: int) -> int:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"thumbnail size must be between {MIN_SIZE} and {MAX_SIZE} pixels, not {size}")
    return size


def sheet_thumbnails(sheet: Sheet, size: int) -> dict[str, Any]:
    """Each distinct path on ``sheet`` to its thumbnail, or to the reason (a str) it has none."""
    thumbs: dict[str, Any] = {}
    for row in sheet.rows:
        for item in (*row.query_images, *row.items):
            if item.path and item.path not in thumbs:
                try:
                    thumbs[item.path] = make_thumbnail(item.path, size)
                except ImageDecodeError as exc:
                    thumbs[item.path] = str(exc)
    return thumbs


_CSS = """
body{font:14px/1.35 system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:20px}h2{font-size:15px;margin:18px 0 6px;word-break:break-all}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(%(cell)dpx,1fr));gap:10px}
figure{margin:0;padding:6px;background:#fff;border:1px solid #ddd;border-radius:4px}
figure.query{background:#eef3ff;border-color:#9ab}
figure.marked{outline:4px solid #00a03c;outline-offset:-2px}
.thumb{display:flex;align-items:center;justify-content:center;height:%(size)dpx}
.thumb img{max-width:100%%;max-height:%(size)dpx}
.missing{background:#c8c8c8;color:#333;font-size:12px;padding:4px;overflow:hidden;text-align:center}
figcaption{font-size:12px;margin-top:4px;word-break:break-all}figcaption span{display:block}
"""


def _figure(item: SheetItem, role: str, thumbs: dict[str, Any]) -> str:
    esc = html.escape
    classes = role + (" marked" if item.marked else "")
    thumb = thumbs.get(item.path) if item.path else None
    if thumb is None:
        picture = '<div class="thumb missing">(no image)</div>' if item.path is None else ""
    elif isinstance(thumb, str):
        picture = f'<div class="thumb missing" title="{esc(item.path)}">cannot show: {esc(thumb)}</div>'
    else:
        data = base64.b64encode(encode_thumbnail(thumb, "JPEG")).decode("ascii")
        alt = esc(os.path.basename(item.path))
        picture = f'<div class="thumb"><img src="data:image/jpeg;base64,{data}" alt="{alt}" width="{thumb.width}" height="{thumb.height}"></div>'
    href = item.href()
    if href:
        picture = f'<a href="{esc(href)}">{picture}</a>'
    caption = "".join(f"<span>{esc(line)}</span>" for line in item.caption)
    return f'<figure class="{classes}">{picture}<figcaption>{caption}</figcaption></figure>'


def render_html_sheet(sheet: Sheet, size: int = DEFAULT_SIZE) -> str:
    """The sheet as one self-contained HTML document (see ``write_html_sheet``)."""
    check_size(size)
    thumbs = sheet_thumbnails(sheet, size)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{esc(sheet.title)}</title><style>{_CSS % {'cell': size + 14, 'size': size}}</style></head>",
        f"<body><h1>{esc(sheet.title)}</h1>",
    ]
    for row in sheet.rows:
        figures = [_figure(item, "query", thumbs) for item in row.query_images]
        figures += [_figure(item, "item", thumbs) for item in row.items]
        parts.append(f'<section><h2>{esc(row.title)}</h2><div class="grid">{"".join(figures)}</div></section>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html_sheet(sheet: Sheet, path: str | os.PathLike, size: int = DEFAULT_SIZE) -> None:
    """Write ``sheet`` as one self-contained HTML file, atomically.

    Thumbnails are inline JPEG ``data:`` URIs, CSS is inline, every text is escaped, links are
    ``file://`` URIs; an unreadable image shows as a grey box with the reason.

    Args:
        sheet: what to show.
        path: the HTML file to write (replaced whole, never half-written).
        size: the thumbnails' longer side in pixels (16 to 512).

    Raises:
        ValueError: ``size`` out of range.
        OSError: the file cannot be written.
    """
    atomic_write_text(path, render_html_sheet(sheet, size))
