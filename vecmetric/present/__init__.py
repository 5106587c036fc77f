"""What people look at: the results table, paths and JSON lines, HTML and PNG contact sheets, terminal previews, thumbnails.

Nothing here imports torch; Pillow is imported only by the functions that draw or decode.
"""

from .guard import DecodeBusyError, DecodeGuard
from .lines import HIT_FIELDS, hit_record, json_lines, path_lines
from .png_sheet import PngSheetLayout, write_png_sheet
from .sheets import Sheet, SheetItem, SheetRow, dedup_sheet, file_uri, render_html_sheet, results_sheet, search_sheet, write_html_sheet
from .table import hits_table, preview_lines
from .terminal import detect_protocol, inline_image, iterm2_sequence, kitty_sequence, preview_line, preview_unavailable
from .thumbnails import ThumbnailCache, encode_thumbnail, make_thumbnail, thumbnail_bytes

__all__ = [
    "DecodeBusyError",
    "DecodeGuard",
    "HIT_FIELDS",
    "PngSheetLayout",
    "Sheet",
    "SheetItem",
    "SheetRow",
    "ThumbnailCache",
    "dedup_sheet",
    "detect_protocol",
    "encode_thumbnail",
    "file_uri",
    "hit_record",
    "hits_table",
    "inline_image",
    "iterm2_sequence",
    "json_lines",
    "kitty_sequence",
    "make_thumbnail",
    "path_lines",
    "preview_line",
    "preview_lines",
    "preview_unavailable",
    "render_html_sheet",
    "results_sheet",
    "search_sheet",
    "thumbnail_bytes",
    "write_html_sheet",
    "write_png_sheet",
]
