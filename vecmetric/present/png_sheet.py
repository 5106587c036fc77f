"""A contact sheet as one PNG: thumbnails in a grid, captions in Pillow's default font.

The canvas is bounded: at most ``MAX_COLUMNS`` cells a row (the rest are dropped and the row
title says how many) and ``MAX_CANVAS_PIXELS`` in all (rows that do not fit are left out and a
last line says how many; the HTML sheet has no such limit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .._fsutil import atomic_write
from .sheets import DEFAULT_SIZE, Sheet, SheetItem, check_size, sheet_thumbnails

MAX_COLUMNS = 16
MAX_CANVAS_PIXELS = 16_000_000  # 48 MB of RGB while drawing
MAX_CAPTION_LINES = 3
FONT_SIZE, PAD, GAP, LINE = 12, 8, 20, 16
BACKGROUND, CELL, QUERY_CELL = (255, 255, 255), (242, 242, 242), (226, 234, 255)
PLACEHOLDER_GREY, TEXT, MARK = (200, 200, 200), (34, 34, 34), (0, 160, 60)
MARK_WIDTH = 4


@dataclass
class PngSheetLayout:
    """Where ``write_png_sheet`` drew things: per drawn row, each thumbnail box ``(left, top, right, bottom)``."""

    width: int
    height: int
    cells: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    rows_omitted: int = 0


class _Text:
    """The default font, with text that always fits and never fails to draw."""

    def __init__(self):
        from PIL import ImageFont

        self.font = ImageFont.load_default(size=FONT_SIZE)  # Pillow falls back to a Latin-1 bitmap font without FreeType
        self.freetype = isinstance(self.font, ImageFont.FreeTypeFont)

    def fit(self, text: str, width: int) -> str:
        if not self.freetype:  # the bitmap fallback font knows only Latin-1
            text = text.encode("latin-1", "replace").decode("latin-1")
        if self.font.getlength(text) <= width:
            return text
        ellipsis = "…" if self.freetype else "..."
        while text and self.font.getlength(text + ellipsis) > width:
            text = text[:-1]
        return text + ellipsis

    def draw(self, draw, xy: tuple[int, int], text: str, width: int) -> None:
        draw.text(xy, self.fit(text, width), fill=TEXT, font=self.font)


def _row_cells(row, columns: int) -> tuple[list[SheetItem], list[SheetItem], int]:
    queries = row.query_images[:columns]
    items = row.items[: max(0, columns - len(queries))]
    return queries, items, len(row.query_images) + len(row.items) - len(queries) - len(items)


def _plan(sheet: Sheet, size: int, caption_lines: int) -> tuple[int, int, int]:
    """Canvas width, height and the number of rows that fit under ``MAX_CANVAS_PIXELS``."""
    widths = [320]
    for row in sheet.rows:
        queries, items, _ = _row_cells(row, MAX_COLUMNS)
        widths.append(PAD + (len(queries) + len(items)) * (size + PAD) + (GAP if queries and items else 0))
    width = max(widths)
    row_height = LINE + 4 + size + 4 + caption_lines * LINE + PAD
    height, fits = PAD + LINE + 2 * PAD, 0
    for _ in sheet.rows:
        if width * (height + row_height + LINE + PAD) > MAX_CANVAS_PIXELS:
            break
        height, fits = height + row_height, fits + 1
    if fits < len(sheet.rows):
        height += LINE + PAD
    return width, height, fits


def _draw_cell(canvas, draw, text: _Text, item: SheetItem, box, thumb, background, caption_lines: int) -> None:
    left, top, right, bottom = box
    size = right - left
    if isinstance(thumb, str):
        draw.rectangle((left, top, right - 1, bottom - 1), fill=PLACEHOLDER_GREY)
        words, line, y = f"cannot show: {thumb}".split(), "", top + 4
        for word in words:  # wrap the reason into the box, as many lines as fit
            if line and text.font.getlength(f"{line} {word}") > size - 8:
                text.draw(draw, (left + 4, y), line, size - 8)
                line, y = word, y + LINE
                if y > bottom - 2 * LINE:
                    break
            else:
                line = f"{line} {word}".strip()
        text.draw(draw, (left + 4, y), line, size - 8)
    else:
        draw.rectangle((left, top, right - 1, bottom - 1), fill=background)
        if thumb is not None:
            canvas.paste(thumb, (left + (size - thumb.width) // 2, top + (size - thumb.height) // 2))
    if item.marked:
        draw.rectangle((left - MARK_WIDTH, top - MARK_WIDTH, right + MARK_WIDTH - 1, bottom + MARK_WIDTH - 1), outline=MARK, width=MARK_WIDTH)
    for n, line in enumerate(item.caption[:caption_lines]):
        text.draw(draw, (left, bottom + 4 + n * LINE), line, size)


def write_png_sheet(sheet: Sheet, path: str | os.PathLike, size: int = DEFAULT_SIZE) -> PngSheetLayout:
    """Draw ``sheet`` as one PNG file, written atomically.

    Each row: its title, then the query cells (tinted), a gap, and the result cells, each a
    ``size`` box with the thumbnail centred and up to three caption lines below. A marked item
    gets a green frame; an unreadable image a grey box with the reason.

    Args:
        sheet: what to show.
        path: the PNG file to write.
        size: the thumbnail box in pixels (16 to 512).

    Returns:
        The layout drawn (canvas size, every thumbnail box, rows left out by the size cap).

    Raises:
        ValueError: ``size`` out of range.
        OSError: the file cannot be written.
    """
    from PIL import Image, ImageDraw

    check_size(size)
    shown_items = [i for row in sheet.rows for i in (*row.query_images, *row.items)]
    caption_lines = min(MAX_CAPTION_LINES, max((len(i.caption) for i in shown_items), default=0))
    width, height, fits = _plan(sheet, size, caption_lines)
    rows = sheet.rows[:fits]
    thumbs = sheet_thumbnails(Sheet(sheet.title, rows), size)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw, text = ImageDraw.Draw(canvas), _Text()
    text.draw(draw, (PAD, PAD), sheet.title, width - 2 * PAD)
    layout = PngSheetLayout(width, height, rows_omitted=len(sheet.rows) - fits)
    y = PAD + LINE + 2 * PAD
    for row in rows:
        queries, items, dropped = _row_cells(row, MAX_COLUMNS)
        title = row.title + (f"  (+{dropped} more not shown)" if dropped else "")
        text.draw(draw, (PAD, y), title, width - 2 * PAD)
        top, x, boxes = y + LINE + 4, PAD, []
        for role, cells in (("query", queries), ("item", items)):
            if role == "item" and queries and items:
                x += GAP - PAD // 2
                draw.line((x - GAP // 2, top, x - GAP // 2, top + size), fill=PLACEHOLDER_GREY, width=2)
            for item in cells:
                box = (x, top, x + size, top + size)
                thumb = thumbs.get(item.path) if item.path else None
                _draw_cell(canvas, draw, text, item, box, thumb, QUERY_CELL if role == "query" else CELL, caption_lines)
                boxes.append(box)
                x += size + PAD
        layout.cells.append(boxes)
        y = top + size + 4 + caption_lines * LINE + PAD
    if layout.rows_omitted:
        text.draw(draw, (PAD, y), f"{layout.rows_omitted} more rows not shown (the canvas is capped; the HTML sheet has them all)", width - 2 * PAD)
    atomic_write(path, lambda tmp: canvas.save(tmp, "PNG"))
    return layout
