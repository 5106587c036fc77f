"""What people look at: paths and JSON lines, HTML and PNG contact sheets, terminal previews, thumbnails.

Nothing here imports torch; Pillow is imported only by the functions that draw or decode.
"""

from .guard import DecodeGuard
from .thumbnails import ThumbnailCache, encode_thumbnail, make_thumbnail, thumbnail_bytes

__all__ = [
    "DecodeGuard",
    "ThumbnailCache",
    "encode_thumbnail",
    "make_thumbnail",
    "thumbnail_bytes",
]
