"""``RowWriter``: the one way rows enter a store during embed, in atomic batches."""

from __future__ import annotations

import os
import time
from typing import Any

from ._scan import FileEntry
from ._store import Store, numpy_to_embeddings

__all__ = ["RowWriter", "FLUSH_ROWS", "FLUSH_ROWS_ENV", "FLUSH_SECONDS"]

FLUSH_ROWS = 4096
FLUSH_ROWS_ENV = "VECMETRIC_FLUSH_ROWS"  # overrides FLUSH_ROWS (the crash-safety tests flush every few rows)
FLUSH_SECONDS = 30.0


class RowWriter:
    """Collects rows and appends them to ``store`` as one Parquet part per batch.

    A row either brings its vector or names a content hash the store already holds, whose
    vector is copied when the batch is written (renamed and duplicate files). Each batch moves
    the manifest's ``next_id`` first, then writes its part atomically: a run killed at any
    moment loses at most the batch in flight and never hands out an id twice.

    Args:
        store: the open store (the caller holds its lock).
        next_id: the first row id to hand out.
        fingerprint: the model fingerprint recorded in each row.
        flush_rows: rows per part (default ``$VECMETRIC_FLUSH_ROWS``, else 4096); a batch is also
            written after ``FLUSH_SECONDS`` so a slow run keeps its work.
    """

    def __init__(self, store: Store, next_id: int, fingerprint: str, flush_rows: int | None = None):
        self.store = store
        self.next_id = next_id
        self.fingerprint = fingerprint
        self.flush_rows = flush_rows or max(1, int(os.environ.get(FLUSH_ROWS_ENV) or FLUSH_ROWS))
        self.embedded = 0
        self.reused = 0
        self._pending: list[tuple[FileEntry, str, Any]] = []
        self._last_flush = time.monotonic()

    def add(self, entry: FileEntry, digest: str, vector=None) -> None:
        """Queue a row: its file, content hash, and vector (None: reuse the stored vector of ``digest``)."""
        self._pending.append((entry, digest, vector))
        if len(self._pending) >= self.flush_rows or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows as one part (nothing when none are queued)."""
        import numpy as np
        import pyarrow as pa

        if not self._pending:
            return
        # Taken out of the queue before writing: a Ctrl-C that lands after the part is in place
        # must not make the final flush write these rows again.
        items, self._pending = self._pending, []
        reuse = self.store.vectors_for_hashes(h for _, h, v in items if v is None)
        rows = []
        for entry, digest, vector in items:
            if vector is None:
                vector = reuse.get(digest)
                if vector is None:  # the row we meant to reuse vanished: embedded again next run
                    continue
                self.reused += 1
            else:
                self.embedded += 1
            rows.append((entry, digest, vector))
        if rows:
            ids = list(range(self.next_id, self.next_id + len(rows)))
            self.next_id += len(rows)
            self.store.write_manifest(next_id=self.next_id)  # first, so an id is never handed out twice
            entries = [entry for entry, _, _ in rows]
            table = pa.table(
                {
                    "id": pa.array(ids, pa.int64()),
                    "path": [e.path for e in entries],
                    "size": pa.array([e.size for e in entries], pa.int64()),
                    "mtime_ns": pa.array([e.mtime_ns for e in entries], pa.int64()),
                    "content_hash": [digest for _, digest, _ in rows],
                    "label": pa.array([e.label for e in entries], pa.string()),
                    "model": [self.fingerprint] * len(rows),
                    "embedding": numpy_to_embeddings(np.stack([vector for _, _, vector in rows])),
                }
            )
            self.store.append(table)
        self._last_flush = time.monotonic()
