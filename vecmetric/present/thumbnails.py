"""Small thumbnails, made without ever holding a huge image at full size, and a cache for them.

Decoding goes through ``vecmetric.images.decode_image`` (pixel cap, first frame, every mode to
RGB, JPEG draft decoding at the smallest scale >= the thumbnail size), then Pillow's
``thumbnail`` with ``reducing_gap`` (``Image.reduce`` by whole factors first, then a filter).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Union

from .._cache import user_cache_dir
from .._fsutil import atomic_write_bytes
from ..images import DECODE_SECONDS, MAX_PIXELS, ImageDecodeError, decode_image, resample_filter, time_limit

Source = Union[str, os.PathLike, bytes]
THUMB_FORMATS = {"JPEG": ".jpg", "PNG": ".png"}
JPEG_QUALITY = 85


def make_thumbnail(source: Source, size: int, *, max_pixels: int = MAX_PIXELS, seconds: float | None = DECODE_SECONDS):
    """An RGB thumbnail that fits in a ``size`` x ``size`` box (never enlarged), aspect kept.

    Args:
        source: a file path or the file's bytes.
        size: the longer side of the result, in pixels (smaller images keep their size).
        max_pixels: larger images are refused as decompression bombs.
        seconds: time limit for the decode (SIGALRM: applies in the main thread only; servers
            use ``DecodeGuard``, which works in any thread).

    Returns:
        A ``PIL.Image.Image`` in RGB mode.

    Raises:
        ImageDecodeError: the file cannot be read, is not an image, is corrupt or too large.
    """
    if size < 1:
        raise ValueError(f"thumbnail size must be at least 1, not {size}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read the file: {exc.strerror or exc}") from None
    with time_limit(seconds):
        img = decode_image(data, min_size=size, max_pixels=max_pixels)
        img.thumbnail((size, size), resample_filter("bicubic"), reducing_gap=2.0)
    return img


def encode_thumbnail(img, fmt: str = "JPEG") -> bytes:
    """``img`` as JPEG or PNG bytes.

    Raises:
        ValueError: an unknown format (the message lists the valid ones).
    """
    fmt = normalise_format(fmt)
    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        img.save(out, "PNG")
    return out.getvalue()


def normalise_format(fmt: str) -> str:
    """``'jpg'``, ``'jpeg'``, ``'png'`` (any case) to ``'JPEG'`` or ``'PNG'``; ValueError otherwise."""
    name = {"JPG": "JPEG"}.get(fmt.upper(), fmt.upper())
    if name not in THUMB_FORMATS:
        raise ValueError(f"unknown thumbnail format {fmt!r}; choose one of: {', '.join(THUMB_FORMATS)}")
    return name


def thumbnail_bytes(data: bytes, size: int, fmt: str = "JPEG", max_pixels: int = MAX_PIXELS) -> bytes:
    """``make_thumbnail`` then ``encode_thumbnail``: what a server sends and a cache keeps.

    Raises:
        ImageDecodeError: as ``make_thumbnail``.
    """
    return encode_thumbnail(make_thumbnail(data, size, max_pixels=max_pixels), fmt)


def _safe_name(name: str) -> str:
    """``name`` itself when it is a harmless file name (hex hashes, uuids), else a digest of it."""
    if re.fullmatch(r"[0-9A-Za-z_-][0-9A-Za-z_.-]{0,79}", name):
        return name
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class ThumbnailCache:
    """Encoded thumbnails in memory (LRU, bounded in bytes), and optionally on disk.

    Keyed by (store id, content hash, size, format), so a changed file gets a new thumbnail and
    nothing is ever written into the store (a read-only store serves too). Disk files live under
    ``user_cache_dir("thumbs", store_id)`` and are written atomically; if that folder cannot be
    written, the cache carries on in memory and ``disk_error`` says why. Safe to share between
    threads; concurrent requests for one missing thumbnail make it once.
    """

    def __init__(self, store_id: str, *, memory_bytes: int = 64 << 20, disk: bool = True, folder: str | os.PathLike | None = None):
        self.store_id = store_id
        self.memory_bytes = memory_bytes
        self.folder: Path | None = Path(folder) if folder is not None else (user_cache_dir("thumbs", _safe_name(store_id)) if disk else None)
        self.disk_error: str | None = None
        self._memory: OrderedDict[tuple, bytes] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._making: dict[tuple, threading.Lock] = {}

    def _key(self, content_hash: str, size: int, fmt: str) -> tuple:
        return (self.store_id, content_hash, int(size), normalise_format(fmt))

    def _disk_path(self, key: tuple) -> Path | None:
        folder = self.folder
        if folder is None:
            return None
        _, content_hash, size, fmt = key
        return folder / f"{size}-{fmt.lower()}" / f"{_safe_name(content_hash)}{THUMB_FORMATS[fmt]}"

    def get(self, content_hash: str, size: int, fmt: str = "JPEG") -> bytes | None:
        """The cached bytes, or None on a miss (an unreadable disk file counts as a miss)."""
        key = self._key(content_hash, size, fmt)
        with self._lock:
            data = self._memory.get(key)
            if data is not None:
                self._memory.move_to_end(key)
                return data
        path = self._disk_path(key)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        self._remember(key, data)
        return data

    def put(self, content_hash: str, size: int, fmt: str, data: bytes) -> None:
        """Keep ``data`` in memory and, while the disk folder is writable, on disk."""
        key = self._key(content_hash, size, fmt)
        self._remember(key, data)
        path = self._disk_path(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        except OSError as exc:
            self.disk_error = f"cannot write thumbnails to {path.parent}: {exc.strerror or exc}"
            self.folder = None

    def get_or_make(self, content_hash: str, size: int, fmt: str, make: Callable[[], bytes]) -> bytes:
        """The cached thumbnail, or ``make()``'s bytes (then cached); one ``make`` per key at a time.

        Raises:
            whatever ``make`` raises (nothing is cached then).
        """
        data = self.get(content_hash, size, fmt)
        if data is not None:
            return data
        key = self._key(content_hash, size, fmt)
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:
            data = self.get(content_hash, size, fmt)
            if data is None:
                data = make()
                self.put(content_hash, size, fmt, data)
            with self._lock:
                if self._making.get(key) is making:
                    del self._making[key]
        return data

    def _remember(self, key: tuple, data: bytes) -> None:
        with self._lock:
            old = self._memory.pop(key, None)
            self._held -= len(old) if old is not None else 0
            if len(data) > self.memory_bytes:
                return
            self._memory[key] = data
            self._held += len(data)
            while self._held > self.memory_bytes:
                _, dropped = self._memory.popitem(last=False)
                self._held -= len(dropped)
