"""``verify_store``: check a store, its index and the files on disk against each other, and repair.

Repairs never re-embed: they quarantine damaged Parquet files (moved under ``_quarantine/``,
never deleted, so their rows are re-embedded by the next ``embed``), drop rows of files that
are gone and duplicate rows, clear leftover temporary files and stale locks, put the manifest's
counts right, and update or rebuild the index from the stored vectors. Every finding that
concerns files or rows names them (``Finding.paths``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._fsutil import is_dead_temporary
from .errors import EncoderError, ExportError, IndexStateError, ManifestError, reason
from .store import LOCK_NAME, META_COLUMNS, StoreLock, open_store, rebuild_manifest, store_schema

__all__ = ["Finding", "VerifyReport", "verify_store"]

QUARANTINE_DIR = "_quarantine"


@dataclass
class Finding:
    """One problem found: what kind, a one-line detail, the files or rows concerned, and whether ``--repair`` fixed it."""

    kind: str
    detail: str
    repairable: bool
    repaired: bool = False
    paths: list[str] = field(default_factory=list)

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

    def add(self, kind: str, detail: str, repairable: bool, paths: list[str] | None = None) -> Finding:
        finding = Finding(kind, detail, repairable, paths=sorted(paths or []))
        self.findings.append(finding)
        return finding

    def find(self, kind: str) -> Finding | None:
        return next((f for f in self.findings if f.kind == kind), None)


def verify_store(path: str | os.PathLike, repair: bool = False, check_files: bool = True) -> VerifyReport:
    """Check ``path`` and, with ``repair``, fix what can be fixed without re-embedding.

    Args:
        path: the store folder.
        repair: apply the repairs (under the store's lock, taken before anything is written).
        check_files: compare rows with the image files on disk (missing or changed files).

    Returns:
        A ``VerifyReport``; ``report.ok`` tells whether anything is still wrong.

    Raises:
        StoreError: no store at ``path`` or an unreadable manifest (nothing to verify against).
        StoreLockedError: ``repair`` while another process writes the store.
    """
    path = Path(path)
    lock = StoreLock(path, "verify --repair") if repair else None
    lock_existed = (path / LOCK_NAME).exists()
    with lock if lock is not None else contextlib.nullcontext():  # raises while a live process holds it
        try:
            store, manifest_problem = open_store(path), None
        except ManifestError as exc:
            if not repair:
                raise
            store, manifest_problem = rebuild_manifest(path), exc.message
        report = VerifyReport(str(store.path.resolve()))
        if manifest_problem:
            report.add("manifest", manifest_problem, True).repaired = True
        if lock_existed:
            _report_lock(store, report, repair)
        _check_leftovers(store, report, repair)
        healthy = _check_parts(store, report, repair)
        table = store.read_table(META_COLUMNS, parts=healthy)
        report.rows = table.num_rows
        _check_rows(store, table, report, repair, check_files)
        healthy = [p for p in healthy if p.exists()]  # a repair may have emptied and removed parts
        _check_manifest(store, report, repair, healthy)
        if all(f.repaired for f in report.findings if f.kind == "damaged-part"):
            _check_index(store, report, repair)
        _check_export(store, report, repair)
    return report


def _report_lock(store, report: VerifyReport, repair: bool) -> None:
    """A lock file was there when verify started: left by a dead process, or held by a live writer."""
    if repair or StoreLock(store.path, "verify").is_stale():
        report.add("stale-lock", "a lock file was left by a process that is gone", True).repaired = repair
    else:
        report.add("in-use", "another vecmetric process is writing the store now; findings may be transient", False)


def _check_leftovers(store, report: VerifyReport, repair: bool) -> None:
    dead = [tmp for tmp in sorted(store.path.glob("_tmp-*.partial")) + sorted(store.index_dir.glob("_tmp-*.partial")) if is_dead_temporary(tmp)]
    if not dead:
        return  # live writers' temporaries are none of verify's business
    finding = report.add("temporary-file", f"{len(dead)} temporary file(s) left by interrupted writes", True, [str(p) for p in dead])
    if repair:
        for tmp in dead:
            tmp.unlink(missing_ok=True)
        finding.repaired = True


def _check_parts(store, report: VerifyReport, repair: bool) -> list[Path]:
    """Check each Parquet file; returns the readable ones."""
    import pyarrow.parquet as pq

    expected = store_schema(store.dim)
    healthy = []
    for part in store.parts():
        problem = None
        try:
            table = pq.read_table(part)
            if not table.schema.equals(expected, check_metadata=False):
                found = table.schema.field("embedding").type if "embedding" in table.schema.names else table.schema
                problem = f"{part.name} has schema {found}, not the store's"
        except (OSError, ValueError) as exc:
            problem = f"{part.name} is damaged: {reason(exc, 160)}"
        if problem is None:
            healthy.append(part)
            continue
        detail = problem + " (its files will be embedded again by the next 'vecmetric embed')"
        finding = report.add("damaged-part", detail, True, [str(part)])
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

    seen_ids: dict[int, str] = {}
    shared_ids: set[int] = set()  # ids of several rows: deleting by such an id would take them all
    newest_by_path: dict[str, int] = {}
    duplicate_paths: list[str] = []
    for row_id, path in sorted(zip(ids, paths)):
        if row_id in seen_ids:
            shared_ids.add(row_id)
        seen_ids.setdefault(row_id, path)
        if path in newest_by_path:
            doomed.add(newest_by_path[path])
            duplicate_paths.append(path)
        newest_by_path[path] = row_id
    if shared_ids:
        shared_paths = [p for i, p in zip(ids, paths) if i in shared_ids]
        report.add("duplicate-id", f"{len(shared_ids)} row id(s) appear more than once: {sorted(shared_ids)[:5]}", False, shared_paths)
    if doomed:
        report.add("duplicate-path", f"{len(doomed)} older duplicate rows of the same file", True, sorted(set(duplicate_paths)))

    foreign = {m for m in models if m != store.model["fingerprint"]}
    if foreign:
        foreign_paths = [p for p, m in zip(paths, models) if m in foreign]
        report.add("foreign-model", f"{len(foreign_paths)} rows made by other models: {sorted(foreign)[:3]}", False, foreign_paths)

    if check_files:
        _check_files(ids, paths, sizes, mtimes, report, doomed)
    if repair and doomed:
        unsafe = doomed & shared_ids
        doomed -= unsafe
        store.delete_ids(doomed)
        for finding in report.findings:
            if finding.kind in ("duplicate-path", "missing-file"):
                finding.repaired = not unsafe
        report.rows -= len(doomed)


def _check_files(ids, paths, sizes, mtimes, report: VerifyReport, doomed: set[int]) -> None:
    """Rows whose file is gone (their ids join ``doomed``) or changed since it was embedded."""
    missing: list[str] = []
    changed: list[str] = []
    for row_id, path, size, mtime in zip(ids, paths, sizes, mtimes):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            missing.append(path)
            doomed.add(row_id)
            continue
        except OSError:
            continue
        if st.st_size != size or st.st_mtime_ns != mtime:
            changed.append(path)
    report.checked_files = len(paths)
    if missing:
        report.add("missing-file", f"{len(missing)} rows point to files that no longer exist (orphaned vectors)", True, missing)
    if changed:
        detail = f"{len(changed)} files changed since they were embedded: run 'vecmetric embed' on their folder"
        report.add("changed-file", detail, False, changed)


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
    from .index import IndexStatus, build_index, index_status, load_index

    state = index_status(store)
    if state.status is IndexStatus.MISSING:
        return
    status, problem = state.status.value, state.reason
    if state.usable:
        try:
            load_index(store.index_dir)  # every shard of a sharded index
            return
        except IndexStateError as exc:
            status, problem = IndexStatus.DAMAGED.value, exc.message
    finding = report.add("index", f"the index is {status}: {problem}", True)
    if repair:
        # verify holds the lock; a stale index is brought up to date, any other is rebuilt
        build_index(store, rebuild=status != IndexStatus.STALE.value, take_lock=False)
        finding.repaired = True


def _check_export(store, report: VerifyReport, repair: bool) -> None:
    """The store's exported query model: present, complete, of this store's model, every byte as recorded.

    A model known not to export is no finding (searches use torch by design); any other state is
    repaired by exporting the model again.
    """
    from .runtime import export_state, load_export, model_dir
    from .store import export_store_model

    folder, fingerprint = model_dir(store.path), store.model["fingerprint"]
    state, why = export_state(folder, fingerprint)
    if state == "ok":
        try:
            load_export(folder, fingerprint).prepare()  # every graph's sha256, as a search would check it
            return
        except ExportError as exc:
            state, why = "damaged", exc.message
    if state == "failed":
        return
    detail = {"missing": "the store has no exported query model, so searches load the model with torch"}.get(state, f"the exported query model is {state}: {why}")
    finding = report.add("export", detail, True, [str(folder)])
    if repair:
        try:
            finding.repaired = export_store_model(store.path, take_lock=False).ok
        except EncoderError as exc:  # the model cannot be loaded here (weights not at hand): say so, go on
            finding.detail += f"; not exported again: {exc.message}"
