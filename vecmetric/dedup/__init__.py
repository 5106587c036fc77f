"""Near-duplicate and byte-identical images in a store: groups, keepers, moving them aside and back.

The core of ``vecmetric dedup``, over arrays (no command line, no store I/O)::

    found = find_duplicates(index, rows, vectors, threshold, keep="oldest")   # or find_leaks(...)
    moved = move_duplicates(found.groups, roots, "set-aside/")    # later: undo_moves(moved.log)

and over a store (the index loaded or built first, rows read once, rows moved with their files)::

    found = dedup_store("my-store")                    # or threshold=0.2, auto=True, against="train-store"
    moved = move_store_duplicates(found, "set-aside/")    # later: undo_store_moves(moved.log)

``find_duplicates`` is ``near_pairs`` (range search, exact re-check) then ``build_groups``
(union-find over content hashes and near pairs, keepers); both are public for other callers.
"""

from ._find import DedupResult, find_duplicates, find_leaks
from ._groups import KEEP_POLICIES, Group, Member, Rows, build_groups, components, keeper_key
from ._move import MOVE_LOG_FORMAT, MoveResult, check_target, move_duplicates, read_move_log, undo_moves
from ._pairs import MAX_K, NearPairs, near_pairs
from ._store import check_store_target, dedup_store, move_store_duplicates, undo_store_moves
from ._threshold import DEFAULT_THRESHOLD, AutoThreshold, auto_threshold, check_threshold, default_threshold

__all__ = [
    "DEFAULT_THRESHOLD",
    "KEEP_POLICIES",
    "MAX_K",
    "MOVE_LOG_FORMAT",
    "AutoThreshold",
    "DedupResult",
    "Group",
    "Member",
    "MoveResult",
    "NearPairs",
    "Rows",
    "auto_threshold",
    "build_groups",
    "check_target",
    "check_store_target",
    "check_threshold",
    "components",
    "dedup_store",
    "default_threshold",
    "find_duplicates",
    "find_leaks",
    "keeper_key",
    "move_duplicates",
    "move_store_duplicates",
    "near_pairs",
    "read_move_log",
    "undo_moves",
    "undo_store_moves",
]
