"""Searching a store with query images or texts, embedded by the store's own model."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import EncoderError, InputError, StoreMismatchError, reason
from ..progress import Reporter
from ..store import embeddings_to_numpy, open_store


@dataclass
class SearchHit:
    """One result: the ``rank``-th nearest stored image to ``query``."""

    query: str
    rank: int
    path: str
    distance: float
    label: str
    id: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _query_vectors(encoder, queries: Sequence[str], text: bool):
    if text:
        return encoder.embed_texts(queries)
    for q in queries:
        if not Path(q).is_file():
            raise InputError(f"query image {q} does not exist" if not Path(q).exists() else f"query {q} is not a file")
    return encoder.embed_paths(queries)


def _index_metric(store) -> str:
    """The metric of the store's index if it has one, else the store's model metric."""
    from ._status import index_status

    sidecar = index_status(store).sidecar or {}
    return sidecar.get("metric") or store.metric


def search_store(
    store: str | os.PathLike,
    queries: Sequence[str],
    k: int = 5,
    ef: int | None = None,
    exact: bool = False,
    text: bool = False,
    model: str | None = None,
    device: str = "auto",
    reporter: Reporter | None = None,
    allow_pickle_files: bool = False,
) -> list[list[SearchHit]]:
    """Find the ``k`` nearest stored images to each query.

    Args:
        store: the store folder.
        queries: image paths, or texts when ``text`` is set (open_clip models).
        k: results per query.
        ef: HNSW search breadth (higher: better recall, slower); default the index's.
        exact: brute-force search instead of the index.
        text: treat ``queries`` as text.
        model: must name the store's own model when given (it is checked, not used instead).
        device: where the query encoder runs.
        reporter: receives the index update's progress when the index is missing or stale.
        allow_pickle_files: accept a checkpoint folder that also holds pickle files (never read).

    Returns:
        One list of hits per query, nearest first. Paths are absolute.

    Raises:
        InputError: a query image is missing or unreadable; k < 1.
        StoreMismatchError: ``model`` is not the store's model.
    """
    import numpy as np

    from ..encoders import load_encoder
    from ._build import load_current_index
    from ._exact import exact_search

    if k < 1:
        raise InputError("--k must be at least 1")
    if not queries:
        raise InputError("no queries given")
    st = open_store(store)
    encoder = load_encoder(model or st.model["spec"], device=device, allow_pickle_files=allow_pickle_files)
    if model is not None:
        st.check_model(encoder)
    elif encoder.fingerprint != st.model["fingerprint"]:
        raise StoreMismatchError(
            f"the store's model {st.model['spec']} no longer loads the same weights (fingerprint changed)",
            hint="embed again into a new store",
        )
    if text and not encoder.supports_text:
        raise EncoderError(f"the store's model {st.model['spec']} cannot embed text", hint="text queries need an open_clip:ARCH@TAG store")
    vectors = _query_vectors(encoder, queries, text)

    if exact:
        metric = _index_metric(st)
        table = st.read_table(["id", "embedding"])
        labels, distances = exact_search(
            embeddings_to_numpy(table.column("embedding")), vectors, k, metric=metric, ids=table.column("id").to_numpy()
        )
    else:
        index = load_current_index(st, reporter=reporter)
        metric = index.metric
        labels, distances = index.query(vectors, k, ef=ef)

    by_id = _rows_by_id(st, np.unique(labels))
    results = []
    for q, row_labels, row_dist in zip(queries, labels, distances):
        hits = []
        for rank, (label, dist) in enumerate(zip(row_labels, row_dist), start=1):
            path, cls = by_id.get(int(label), ("", ""))
            # Rounding can make a self-match's distance -1e-7; cosine and l2 distances are never negative.
            dist = float(dist) if metric == "ip" else max(0.0, float(dist))
            hits.append(SearchHit(str(q), rank, path, dist, cls, int(label)))
        results.append(hits)
    return results


def _rows_by_id(store, wanted) -> dict[int, tuple[str, str]]:
    """``id -> (path, label)`` for the ``wanted`` ids, reading only row groups whose id range holds one.

    Reads with ``pyarrow.parquet`` rather than ``store.read_table``: ``pyarrow.dataset`` imports
    pandas when it is installed, which cost every ``search`` 0.3-0.9 s (benchmarks/cli_latency.py).
    """
    import numpy as np
    import pyarrow.parquet as pq

    from ..errors import StoreError

    wanted = np.asarray(wanted, dtype=np.int64)
    found: dict[int, tuple[str, str]] = {}
    if not len(wanted):
        return found
    for part in store.parts():
        try:
            parquet = pq.ParquetFile(part)
            meta = parquet.metadata
            id_column = next(i for i in range(meta.num_columns) if meta.schema.column(i).path == "id")
            groups = []
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(id_column).statistics
                if stats is None or not stats.has_min_max or bool(((wanted >= stats.min) & (wanted <= stats.max)).any()):
                    groups.append(g)
            if not groups:
                continue
            table = parquet.read_row_groups(groups, columns=["id", "path", "label"])
        except (OSError, ValueError, StopIteration) as exc:
            raise StoreError(
                f"store {store.path} has a damaged Parquet file ({part.name}): {reason(exc)}",
                hint="run 'vecmetric verify --repair' to drop damaged files, then embed again",
            ) from None
        ids = np.asarray(table.column("id").to_pylist(), dtype=np.int64)  # ChunkedArray.to_numpy imports pandas too
        hits = np.flatnonzero(np.isin(ids, wanted))
        if len(hits):
            paths, labels = table.column("path"), table.column("label")
            for row in hits.tolist():
                found[int(ids[row])] = (paths[row].as_py(), labels[row].as_py())
    return found
