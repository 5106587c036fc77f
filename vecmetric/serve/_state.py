"""What a server holds while it runs: the search session, the decode guard, the thumbnail cache, its limits."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..images import MAX_PIXELS
from ..progress import Reporter, reporter_or_default

__all__ = ["ServeLimits", "ServerState"]


@dataclass(frozen=True)
class ServeLimits:
    """The limits a server holds its clients to.

    Attributes:
        upload_bytes: the largest query image accepted (413 above it).
        stored_file_bytes: the largest stored file a thumbnail is made of.
        max_pixels: larger images (uploaded or stored) are refused from their header (decompression bombs).
        decode_workers: decodes that run at once, each in its own process (``DecodeGuard``).
        decode_seconds: a decode that runs longer is stopped (its process killed).
        thumbnail_memory_bytes: thumbnails kept in memory (and on disk in the per-user cache, unless turned off).
        max_batch: uploaded images embedded together in one model run.
    """

    upload_bytes: int = 20_000_000
    stored_file_bytes: int = 256 << 20
    max_pixels: int = MAX_PIXELS
    decode_workers: int = 2
    decode_seconds: float = 10.0
    thumbnail_memory_bytes: int = 64 << 20
    max_batch: int = 16


class ServerState:
    """One store served: opened by ``create_app``, warmed up in the background, closed at shutdown.

    Args:
        store: the open store.
        limits: the ``ServeLimits``.
        reporter: receives warnings (a torch fallback) and the line saying the server is ready.
        thumbnails_on_disk: keep thumbnails in the per-user cache too, not only in memory.
        index: an index object for the session instead of the store's own (see ``SearchSession``).
    """

    def __init__(self, store, limits: ServeLimits, reporter: Reporter | None = None, thumbnails_on_disk: bool = True, index: Any = None):
        from ..encoders._config import PreprocessConfig
        from ..present import DecodeGuard, ThumbnailCache
        from ..query import SearchSession

        self.store = store
        self.limits = limits
        self.reporter = reporter_or_default(reporter)
        self.session = SearchSession(store, live=True, index=index, reporter=self.reporter, batch_images=True)
        self.preprocess = PreprocessConfig.from_dict(store.model["preprocess"])
        # One guard for uploads and stored files: the upload cap is checked before it (a stored file may be larger).
        self.guard = DecodeGuard(
            max_bytes=max(limits.upload_bytes, limits.stored_file_bytes),
            max_pixels=limits.max_pixels,
            workers=limits.decode_workers,
            seconds=limits.decode_seconds,
        )
        self.thumbnails = ThumbnailCache(str(store.manifest.get("store_id") or store.path), memory_bytes=limits.thumbnail_memory_bytes, disk=thumbnails_on_disk)
        self.failed: str | None = None
        self._given_index = index is not None
        self._refreshed = threading.Event()

    @property
    def ready(self) -> bool:
        """Whether the index is loaded (``/healthz``); an index given to the server counts once it was refreshed."""
        return self.session.loaded and (not self._given_index or self._refreshed.is_set())

    def warm_up(self) -> None:
        """Load the index and the image encoder now, so that the first searches need not wait for them."""
        try:
            self.session.refresh()
            self._refreshed.set()
            self.session.encoder("image")
        except Exception as exc:  # noqa: BLE001 - a server keeps answering (with errors) whatever the store does
            self.failed = str(exc)
            self.reporter.warn(f"the server cannot search yet: {exc}")
            return
        self.reporter.log(f"ready: {self.session.index.count} images searchable")

    def close(self) -> None:
        """Stop the decode workers and close an index held elsewhere (Ray actors), at shutdown."""
        self.guard.close()
        index = self.session._index
        if index is not None and hasattr(index, "close"):
            index.close()
