"""``verify_store``: check a store, its index and the files on disk against each other, and repair.

Repairs never re-embed: they quarantine damaged Parquet files (moved under ``_quarantine/``,
never deleted, so their rows are re-embedded by the next ``embed``), drop rows of files that
are gone and duplicate rows, clear leftover temporary files and stale locks, put the manifest's
counts right, and update or rebuild the index from the stored vectors.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._fsutil import is_dead_temporary
from .errors import IndexStateError, ManifestError
from .store import open_store
from .store._store import rebuild_manifest
from .store._lock import LOCK_NAME, StoreLock
from .store._store import META_COLUMNS

QUARANTINE_DIR = "_quarantine"


@dataclass
class Finding:
    """One problem found: what kind, where, and whether ``--repair`` fixed it."""

    kind: str
    detail: str
    repairable: bool
    repaired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class VerifyReport:
    store: str
    rows: int = 0
    checked_files: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong, or everything wrong was repaired."""
        return all(f.repaired for f in self.findings)

    def add(self, kind: str, detail: str, repairable: bool) -> Finding:
        finding = Finding(kind, detail, repairable)
        self.findings.append(finding)
        return finding


def verify_store(path: str | os.PathLike, repair: bool = False, check_files: bool = True) -> VerifyReport:
    """Check ``path`` and, with ``repair``, fix what can be fixed without re-embedding.

    Args:
        path: the store folder.
        repair: apply the repairs (takes the store's lock).
        check_files: compare rows with the image files on disk (missing or changed files).

    Returns:
        A ``VerifyReport``; ``report.ok`` tells whether anything is still wrong.

    Raises:
        StoreError: no store at ``path`` or an unreadable manifest (nothing to verify against).
        StoreLockedError: ``repair`` while another process writes the store.
    """
    try:
        store = open_store(path)
        manifest_problem = None
    except ManifestError as exc:
        if not repair:
            raise
        manifest_problem = exc.message
        store = rebuild_manifest(path)
    report = VerifyReport(str(store.path.resolve()))
    if manifest_problem:
        report.add("manifest", manifest_problem, True).repaired = True
    lock = StoreLock(store.path, "verify --repair") if repair else None
    lock_existed = (store.path / LOCK_NAME).exists()
    if lock is not None:
        lock.acquire()  # raises while a live process holds the lock; takes over a dead one's
    if lock_existed:
        stale = lock is not None or StoreLock(store.path, "verify").is_stale()
        if stale:
            report.add("stale-lock", "a lock file was left by a process that is gone", True).repaired = lock is not None
        else:
            report.add("in-use", "another vecmetric process is writing the store now; findings may be transient", False)
    try:
        _check_leftovers(store, report, repair)
        healthy = _check_parts(store, report, repair)
        table = store.read_table(META_COLUMNS, parts=healthy)
        report.rows = table.num_rows
        _check_rows(store, table, report, repair, check_files)
        healthy = [p for p in healthy if p.exists()]  # a repair may have emptied and removed parts
        _check_manifest(store, report, repair, healthy)
        if all(f.repaired for f in report.findings if f.kind == "damaged-part"):
            _check_index(store, report, repair)
    finally:
        if lock is not None:
            lock.release()
    return report


def _check_leftovers(store, report: VerifyReport, repair: bool) -> None:
    for tmp in sorted(store.path.glob("_tmp-*.partial")) + sorted(store.index_dir.glob("_tmp-*.partial")):
        if not is_dead_temporary(tmp):
            continue  # a live process is writing it now
        finding = report.add("temporary-file", f"{tmp.name} was left by an interrupted write", True)
        if repair:
            tmp.unlink(missing_ok=True)
            finding.repaired = True


def _check_parts(store, report: VerifyReport, repair: bool) -> list[Path]:
    """Check each Parquet file; returns the readable ones."""
    import pyarrow.parquet as pq

    from .store import store_schema

    expected = store_schema(store.dim)
    healthy = []
    for part in store.parts():
        problem = None
        try:
            table = pq.read_table(part)
            if not table.schema.equals(expected, check_metadata=False):
                problem = f"{part.name} has schema {table.schema.field('embedding').type if 'embedding' in table.schema.names else table.schema}, not the store's"
        except (OSError, ValueError) as exc:
            problem = f"{part.name} is damaged: {str(exc).splitlines()[0][:160]}"
        if problem is None:
            healthy.append(part)
            continue
        finding = report.add("damaged-part", problem + " (its files will be embedded again by the next 'vecmetric embed')", True)
        if repair:
            quarantine = store.path / QUARANTINE_DIR
            quarantine.mkdir(exist_ok=True)
            shutil.move(str(part), str(quarantine / part.name))
            finding.repaired = True
    return healthy


def _check_rows(store, table, report: VerifyReport, repair: bool, check_files: bool) -> None:
    ids = table.column("id").to_pylist()
    paths = table.column("path").to_pylist()
    sizes = table.column("size").to_pylist()
    mtimes = table.column("mtime_ns").to_pylist()
    models = table.column("model").to_pylist()
    doomed: set[int] = set()

    seen_ids: set[int] = set()
    shared_ids: set[int] = set()  # ids of several rows: deleting by such an id would take them all
    newest_by_path: dict[str, int] = {}
    for row_id, path in sorted(zip(ids, paths)):
        if row_id in seen_ids:
            report.add("duplicate-id", f"row id {row_id} appears more than once", False)
            shared_ids.add(row_id)
        seen_ids.add(row_id)
        if path in newest_by_path:
            doomed.add(newest_by_path[path])
        newest_by_path[path] = row_id
    if doomed:
        report.add("duplicate-path", f"{len(doomed)} older duplicate rows of the same file", True)

    foreign = {m for m in models if m != store.model["fingerprint"]}
    if foreign:
        report.add("foreign-model", f"rows made by other models: {sorted(foreign)[:3]}", False)

    missing = changed = 0
    if check_files:
        for row_id, path, size, mtime in zip(ids, paths, sizes, mtimes):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                missing += 1
                doomed.add(row_id)
                continue
            except OSError:
                continue
            if st.st_size != size or st.st_mtime_ns != mtime:
                changed += 1
        report.checked_files = len(paths)
        if missing:
            report.add("missing-file", f"{missing} rows point to files that no longer exist (orphaned vectors)", True)
        if changed:
            report.add("changed-file", f"{changed} files changed since they were embedded: run 'vecmetric embed' on their folder", False)
    if repair and doomed:
        unsafe = doomed & shared_ids
        doomed -= unsafe
        store.delete_ids(doomed)
        for finding in report.findings:
            if finding.kind in ("duplicate-path", "missing-file"):
                finding.repaired = not unsafe
        report.rows -= len(doomed)


def _check_manifest(store, report: VerifyReport, repair: bool, parts: list[Path]) -> None:
    ids = store.read_table(["id"], parts=parts).column("id").to_numpy()
    rows = len(ids)
    max_id = int(ids.max()) + 1 if len(ids) else 0
    recorded = store.manifest.get("counts", {}).get("rows")
    wrong = []
    if recorded != rows:
        wrong.append(f"says {recorded} rows, the data holds {rows}")
    if int(store.manifest.get("next_id", 0)) < max_id:
        wrong.append(f"next_id {store.manifest.get('next_id')} is below the largest row id + 1 ({max_id})")
    if wrong:
        finding = report.add("manifest", "the manifest " + "; ".join(wrong), True)
        if repair:
            counts = dict(store.manifest.get("counts", {}), rows=rows)
            store.write_manifest(counts=counts, next_id=max(int(store.manifest.get("next_id", 0)), max_id))
            finding.repaired = True


def _check_index(store, report: VerifyReport, repair: bool) -> None:
    from .index import build_index, index_is_current
    from .index._hnsw import SIDECAR_NAME, HnswIndex

    if not (store.index_dir / SIDECAR_NAME).is_file():
        return
    problem = None
    try:
        index = HnswIndex.load(store.index_dir)
        if int(index.sidecar.get("dim", -1)) != store.dim:
            problem = f"the index has dimension {index.sidecar.get('dim')}, the store {store.dim}"
        elif index.sidecar.get("model_fingerprint") != store.model["fingerprint"] or index.sidecar.get("store_id") != store.manifest.get(
            "store_id"
        ):
            problem = "the index was built from another store's vectors"
        elif not index_is_current(store):
            problem = "the index is out of step with the store"
    except IndexStateError as exc:
        problem = str(exc)
    if problem is None:
        return
    finding = report.add("index", problem, True)
    if repair:
        build_index(store, rebuild="out of step" not in problem, take_lock=False)  # verify holds the lock
        finding.repaired = True


__all__ = ["Finding", "VerifyReport", "verify_store"]
