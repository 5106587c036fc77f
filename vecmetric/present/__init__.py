"""What people look at: paths and JSON lines, HTML and PNG contact sheets, terminal previews, thumbnails.

Nothing here imports torch; Pillow is imported only by the functions that draw or decode.
"""

from .guard import DecodeGuard
from .png_sheet import PngSheetLayout, write_png_sheet
from .sheets import Sheet, SheetItem, SheetRow, file_uri, render_html_sheet, search_sheet, write_html_sheet
from .thumbnails import ThumbnailCache, encode_thumbnail, make_thumbnail, thumbnail_bytes

__all__ = [
    "DecodeGuard",
    "PngSheetLayout",
    "Sheet",
    "SheetItem",
    "SheetRow",
    "ThumbnailCache",
    "encode_thumbnail",
    "file_uri",
    "make_thumbnail",
    "render_html_sheet",
    "search_sheet",
    "thumbnail_bytes",
    "write_html_sheet",
    "write_png_sheet",
]
