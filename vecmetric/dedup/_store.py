"""Dedup over a store: what ``vecmetric dedup`` calls.

``dedup_store`` loads the store's index first (built or updated when missing or stale, as
``search`` does; a read-only store with a current index works), reads the rows and vectors
once, chooses the threshold and finds the groups. ``move_store_duplicates`` sets the
non-keepers aside and takes their rows out of the store; ``undo_store_moves`` puts both back.

A move, under the store's lock, in this order (each step atomic):

1. the rows of the files to move are saved, vectors and ids included, to
   ``<log>.rows.parquet`` beside the log, in the target folder;
2. the log is written (state ``moving``), the files are moved, the log says ``moved``;
3. the rows are deleted from the store (``Store.delete_ids``), the manifest's counts and an
   existing index are brought up to date.

A run killed at any point leaves files and rows that either command recovers: ``dedup --undo
LOG`` puts back every file that moved and appends every saved row the store lacks (none, when
it was killed before step 3), and ``verify --repair`` instead finishes the move (it drops the
rows of files that are gone). Undo restores the rows before it moves the files back and marks
the log ``undone`` last, so an undo killed mid-way runs again.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import InputError, MoveError, StoreMismatchError, UsageError
from ..progress import Reporter
from ._find import DedupResult, find_duplicates, find_leaks
from ._groups import Rows, keeper_key
from ._move import MoveResult, check_target, move_duplicates, read_move_log, undo_moves
from ._threshold import auto_threshold, check_threshold, default_threshold

ROW_COLUMNS = ["id", "path", "size", "mtime_ns", "content_hash", "embedding"]


def _open(store):
    from ..store import Store, open_store

    return store if isinstance(store, Store) else open_store(store)


def _planned_metric(store) -> str:
    """The metric the store's index measures in (its sidecar's), else the store's model's: before any build."""
    from ..index import index_status

    return (index_status(store).sidecar or {}).get("metric") or store.metric


def _read_rows(store) -> tuple[Rows, Any, list]:
    """The store's rows, their vectors and the snapshot of the files they were read from."""
    from ..store import embeddings_to_numpy

    snapshot = store.snapshot()
    table = store.read_table(ROW_COLUMNS)
    return Rows.from_table(table), embeddings_to_numpy(table.column("embedding")), snapshot


def _check_options(store, threshold, auto: bool | None, keep: str) -> str:
    """Refuse bad options before any index is built; returns the metric the threshold will be in."""
    from ..distances import geometry_of

    if geometry_of(store.model).hyperbolic:
        raise InputError(
            "dedup does not support hyperbolic (Poincare) stores yet",
            hint="'vecmetric search --like ID' finds an image's nearest neighbours by exact Poincare distance",
        )
    keeper_key(keep)
    if auto and threshold is not None:
        raise UsageError("--threshold and --auto cannot go together", hint="give one: a threshold, or --auto to choose it")
    metric = _planned_metric(store)
    if threshold is not None:
        check_threshold(threshold, metric)
    elif metric == "ip":
        raise InputError(
            "an inner-product store needs an explicit --threshold",
            hint="its distances (1 - inner product) have no fixed scale; 'vecmetric search' prints them",
        )
    return metric


def _choose_threshold(store, index, rows: Rows, vectors, threshold, auto: bool | None):
    """``(threshold, how it was chosen, AutoThreshold or None)``."""
    if threshold is not None:
        return check_threshold(threshold, index.metric), "given", None
    measured = default_threshold(store.model, index.metric)
    if measured is not None and not auto:
        return measured, "default", None
    if auto is False:
        raise InputError(f"no measured default threshold for the model {store.model.get('spec')}", hint="give --threshold or --auto")
    chosen = auto_threshold(index, vectors, rows.ids, rows.content_hashes, index.metric)
    return chosen.threshold, "auto", chosen


def _reference(store, against, reporter):
    """The other store of ``--against``, its current index, rows and vectors; checked to measure as this one does."""
    from ..index import load_current_index

    other = _open(against)
    if other.path.resolve() == store.path.resolve():
        raise InputError(f"--against names the store {store.path} itself", hint="leave out --against to find duplicates within it")
    if other.model["fingerprint"] != store.model["fingerprint"]:
        raise StoreMismatchError(
            f"the store {other.path} holds vectors of {other.model.get('spec')}, this one of {store.model.get('spec')}",
            hint="compare stores made by one model",
        )
    index = load_current_index(other, reporter=reporter)
    if index.metric != _planned_metric(store):
        raise StoreMismatchError(
            f"the index of {other.path} measures {index.metric} distances, this store's {_planned_metric(store)}",
            hint="index both stores with one --metric",
        )
    rows, vectors, _ = _read_rows(other)
    return other, index, rows, vectors


def dedup_store(store, threshold=None, auto: bool | None = None, keep: str = "oldest", against=None, reporter: Reporter | None = None) -> DedupResult:
    """Groups of duplicates in a store, or (``against``) its rows that duplicate another store's.

    Args:
        store: a store folder or an open ``Store``.
        threshold: the largest distance of a near pair, in the units ``search`` prints; None
            chooses one: the measured default for the default model under cosine
            (``DEFAULT_THRESHOLD``), else ``--auto``'s.
        auto: True chooses the threshold from the store's own distances (``auto_threshold``);
            False refuses to, so a model without a measured default needs ``threshold``.
        keep: the keeper policy: ``oldest`` (file mtime), ``newest``, ``largest`` (bytes) or
            ``shortest-path``; ties go to the shorter path.
        against: another store (folder or ``Store``) made by the same model: the groups then
            join this store's rows to the other's, whose rows are all kept (the other's
            index is searched; ``auto`` still reads this store's own distances).
        reporter: receives the progress of an index build.

    Returns:
        A ``DedupResult`` whose ``groups`` list the keeper first, with how the threshold was
        chosen and the store's snapshot (for ``move_store_duplicates``).

    Raises:
        InputError: a bad threshold or keep policy, an inner-product store without a
            threshold, ``against`` naming the store itself.
        UsageError: ``threshold`` and ``auto`` both given.
        StoreMismatchError: ``against`` holds another model's vectors or another metric's index.
        StoreError, IndexStateError, StoreLockedError: as ``load_current_index`` raises them.
    """
    from ..index import load_current_index

    st = _open(store)
    _check_options(st, threshold, auto, keep)
    if against is None:
        index = load_current_index(st, reporter=reporter)
        rows, vectors, snapshot = _read_rows(st)
        value, how, chosen = _choose_threshold(st, index, rows, vectors, threshold, auto)
        found = find_duplicates(index, rows, vectors, value, keep=keep)
    else:
        other, other_index, other_rows, other_vectors = _reference(st, against, reporter)
        needs_own = threshold is None and (auto or default_threshold(st.model, other_index.metric) is None)
        index = load_current_index(st, reporter=reporter) if needs_own else other_index
        rows, vectors, snapshot = _read_rows(st)
        value, how, chosen = _choose_threshold(st, index, rows, vectors, threshold, auto)
        found = find_leaks(other_index, rows, vectors, other_rows, other_vectors, value, keep=keep)
        found.against = str(other.path.resolve())
    found.threshold_from, found.auto = how, chosen
    found.store, found.snapshot = str(st.path.resolve()), snapshot
    return found


def _new_log_path(target: Path) -> Path:
    return target / f"vecmetric-dedup-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.json"


def _save_rows(store, ids: list[int], path: Path) -> int:
    """Write the rows ``ids`` (every column, in the store's schema) to ``path``, atomically; returns how many."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .._fsutil import atomic_write
    from ..store import store_schema

    table = store.read_table(filter=pc.field("id").isin(pa.array(ids, pa.int64())))
    try:
        atomic_write(path, lambda tmp: pq.write_table(table.cast(store_schema(store.dim)), tmp, compression="zstd"))
    except OSError as exc:
        raise MoveError(f"cannot write the saved rows {path}: {exc.strerror or exc}", hint="nothing was moved") from None
    return table.num_rows


def _after_rows_changed(store) -> None:
    """Put the manifest's row count right and bring an existing index up to date (the caller holds the lock)."""
    from ..index import IndexStatus, build_index, index_status

    store.write_manifest(counts=dict(store.manifest.get("counts", {}), rows=store.count()))
    if index_status(store).status is IndexStatus.STALE:  # a missing index stays missing; a current one is left alone
        build_index(store, take_lock=False)


def check_store_target(store, target) -> Path:
    """``target`` checked as a ``--move-to`` folder for ``store`` (created if missing), before anything is searched or moved.

    Returns:
        The target, resolved.

    Raises:
        MoveError: the store records no embed roots (stores made before they were recorded),
            ``target`` is inside one, or it cannot be created or written.
    """
    st = _open(store)
    if not st.roots:
        raise MoveError(
            f"the store {st.path} records no embed root (it was made before roots were recorded)",
            hint=f"run 'vecmetric embed FOLDER --store {st.path}' once on the folder it holds to record it; nothing was moved",
        )
    return check_target(target, st.roots)


def move_store_duplicates(found: DedupResult, target, log_path=None) -> MoveResult:
    """Move the non-keepers of ``found`` (from ``dedup_store``) under ``target`` and remove their rows from the store.

    Paths under ``target`` are the files' paths relative to the embed root the store records
    (``Store.roots``). The removed rows are saved beside the log (``<log>.rows.parquet``) for
    ``undo_store_moves``; nothing is deleted. See the module's notes for the order of the steps
    and how a killed run is recovered.

    Args:
        found: what ``dedup_store`` returned for this store.
        target: the folder to move into (created if missing; outside every embed root).
        log_path: the JSON log (default ``target/vecmetric-dedup-<time>-<random>.json``).

    Returns:
        A ``MoveResult``: the log's path, each (from, to), and the rows removed.

    Raises:
        MoveError: the store records no embed roots, ``target`` is inside one or cannot be
            written, a file is gone, or the store changed since ``found`` (nothing moved).
        StoreLockedError: another process writes the store.
    """
    from ..store import StoreLock

    st = _open(found.store)
    roots = st.roots
    real_target = check_store_target(st, target)
    with StoreLock(st.path, "dedup --move-to"):
        if st.snapshot() != found.snapshot:
            raise MoveError(f"the store {st.path} changed since its duplicates were found", hint="run dedup again; nothing was moved")
        log = Path(log_path) if log_path else _new_log_path(real_target)
        rows_file = log.with_name(log.name.removesuffix(".json") + ".rows.parquet")
        ids = sorted({m.id for m in found.to_move})
        saved = _save_rows(st, ids, rows_file)
        extra = {"store": str(st.path.resolve()), "model_fingerprint": st.model["fingerprint"], "rows_file": str(rows_file), "rows": saved}
        result = move_duplicates(found.groups, roots, real_target, log_path=log, extra=extra)
        result.rows = st.delete_ids(ids)
        _after_rows_changed(st)
    return result


def _read_saved_rows(doc: dict[str, Any], log_path):
    import pyarrow.parquet as pq

    path = doc.get("rows_file")
    try:
        return pq.read_table(path)
    except (OSError, ValueError, TypeError) as exc:
        raise MoveError(f"cannot read the saved rows {path} that {log_path} names: {exc}", hint="nothing was moved back") from None


def _restore_rows(store, saved) -> int:
    """Append the saved rows the store lacks, with their ids and vectors; returns how many.

    A row the store holds for one of their paths under another id (a file embedded there after
    the move, since gone: undo never puts a file where one exists) is replaced. A saved id the
    store has given to another file since (a store embedded again from scratch) is replaced by
    a new one, so ids stay unique.
    """
    import pyarrow as pa

    current = store.read_table(["id", "path"])
    path_of = dict(zip(current.column("id").to_pylist(), current.column("path").to_pylist()))
    saved_ids, saved_paths = saved.column("id").to_pylist(), saved.column("path").to_pylist()
    saved_id_of = dict(zip(saved_paths, saved_ids))
    stale = [i for i, p in path_of.items() if p in saved_id_of and saved_id_of[p] != i]
    if stale:
        store.delete_ids(stale)
        for i in stale:
            del path_of[i]
    wanted = [path_of.get(i) != p for i, p in zip(saved_ids, saved_paths)]
    missing = saved.filter(pa.array(wanted, pa.bool_()))
    if not missing.num_rows:
        return 0
    next_id = max([int(store.manifest.get("next_id", 0)), *(i + 1 for i in path_of), *(i + 1 for i in saved_ids)])
    ids = []
    for i in missing.column("id").to_pylist():
        if i in path_of:  # taken by another file
            i, next_id = next_id, next_id + 1
        ids.append(i)
    store.write_manifest(next_id=max(next_id, max(ids) + 1))  # first, as RowWriter does: an id is never handed out twice
    store.append(missing.set_column(missing.schema.get_field_index("id"), "id", pa.array(ids, pa.int64())))
    return missing.num_rows


def undo_store_moves(log_path, store=None) -> MoveResult:
    """Put back every file a ``move_store_duplicates`` log records, and their rows into the store.

    The rows come back from the file saved beside the log with their ids and vectors (nothing is
    embedded again), before the files move back; a log written by ``move_duplicates`` alone (no
    store) puts back the files only.

    Args:
        log_path: the JSON log ``--move-to`` printed.
        store: the store (default: the one the log names).

    Returns:
        A ``MoveResult``: each (from, to) moved back and the rows restored.

    Raises:
        MoveError: the log or its saved rows are unreadable, or undone already; a moved file is
            missing or changed, or its old place is taken (nothing moved back).
        StoreMismatchError: the store holds another model's vectors than the log's rows.
        StoreLockedError: another process writes the store.
    """
    from ..store import StoreLock

    doc = read_move_log(log_path)
    if store is None and not doc.get("store"):
        return undo_moves(log_path)
    st = _open(store if store is not None else doc["store"])
    if doc.get("model_fingerprint") != st.model["fingerprint"]:
        raise StoreMismatchError(f"the rows in {log_path} are of another model than the store {st.path}'s", hint="give the store the move was made from")
    restored = []
    with StoreLock(st.path, "dedup --undo"):
        saved = _read_saved_rows(doc, log_path)
        result = undo_moves(log_path, before_moving=lambda _doc, _pending: restored.append(_restore_rows(st, saved)))
        _after_rows_changed(st)
    result.rows = sum(restored)
    return result
