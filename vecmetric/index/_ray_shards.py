"""A sharded index on Ray: shards built in parallel Ray tasks, and held in Ray actors for serving.

Building: the driver (the process running ``index --engine ray``) reads each touched shard's rows
and its current files from the store, a Ray task per shard updates or builds it with hnswlib and
hands the saved index back, and the driver writes it and commits the one sidecar, as the local
build does. Serving: ``RayShardedIndex`` loads each shard into an actor of its own, placed by Ray
where there is memory for it (``SPREAD``), so an index larger than one machine's memory is served;
``query`` asks every actor and merges their answers exactly (``merge_top_k``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from .._ray_session import ray_session
from ..errors import EngineError, IndexStateError
from ..progress import Reporter
from ._hnsw import HnswIndex, IndexParams, write_generation_bytes
from ._shards import gather_vectors, held_vectors, merge_top_k, shard_count, shard_generation

__all__ = ["RayShardedIndex", "build_shards_with_ray", "live_ray_index"]

BUILD_RETRIES = 2  # a shard task lost with its worker or node is run again, at most this many times
ACTOR_CPUS = 0.25  # at most, and less when the cluster has fewer CPUs than shards / 4: Ray would wait forever
ACTOR_START_TIMEOUT = 600.0  # seconds for every shard actor to be placed and loaded
MEMORY_MARGIN = 1.25  # an actor asks Ray for its shard file's size times this


def build_shards_with_ray(store, base: dict[str, Any], works: list, n_shards: int, options: dict[str, Any], reporter: Reporter) -> dict[int, dict]:
    """Build or update the shards of ``works`` (``_build.ShardWork``) in Ray tasks; write them here.

    Returns:
        ``{shard: files}`` for the sidecar (``generation``, ``count``, ``capacity``, ``elements``).

    Raises:
        EngineError: the cluster cannot be reached or a task failed beyond its retries.
    """
    from ._build import _DamagedShard

    if not works:
        return {}
    with ray_session(options["address"]) as ray:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        per_task = max(1, cpus // min(len(works), cpus))
        if options["threads"] and options["threads"] > 0:
            per_task = min(per_task, options["threads"])
        task = ray.remote(_build_shard).options(num_cpus=per_task, max_retries=BUILD_RETRIES)
        pending = {}
        for work in works:
            vectors, ids = _shard_rows(store, work)
            existing = _read_files(store.index_dir, work.files) if work.files is not None else None
            pending[task.remote(base, store.dim, existing, work.gone_ids, vectors, ids, per_task)] = work
        written = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            work = pending.pop(done[0])
            try:
                index_bytes, ids, files = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                raise EngineError(f"building shard {work.shard} on Ray failed: {str(exc).strip().splitlines()[0][:300]}") from exc
            if index_bytes is None:
                raise _DamagedShard(files)
            generation = shard_generation(work.shard, n_shards)
            write_generation_bytes(store.index_dir, generation, index_bytes, ids)
            written[work.shard] = {**files, "generation": generation}
            reporter.advance(len(work.new_ids))
    return written


def _shard_rows(store, work):
    """The vectors and ids a shard gains, read from the store in one array each."""
    import numpy as np

    from ._build import shard_batches

    if not len(work.new_ids):
        return np.zeros((0, store.dim), np.float32), np.zeros(0, np.int64)
    batches = list(shard_batches(store, work.new_ids))
    return np.concatenate([v for v, _ in batches]), np.concatenate([i for _, i in batches])


def _read_files(folder: Path, files: dict[str, Any]):
    """A shard's current files as ``(files, index bytes, ids bytes)``; None bytes when unreadable."""
    try:
        gen = files["generation"]
        return files, (folder / f"hnsw-{gen}.bin").read_bytes(), (folder / f"ids-{gen}.npy").read_bytes()
    except (OSError, KeyError):
        return files, None, None


def _open_from_bytes(folder: Path, base: dict[str, Any], existing) -> HnswIndex:
    """An ``HnswIndex`` from a shard's files sent as bytes, written to ``folder`` first (hnswlib reads files)."""
    files, index_bytes, ids_bytes = existing
    if index_bytes is None:
        raise IndexStateError("its files cannot be read")
    gen = files["generation"]
    (folder / f"hnsw-{gen}.bin").write_bytes(index_bytes)
    (folder / f"ids-{gen}.npy").write_bytes(ids_bytes)
    return HnswIndex.load_generation(folder, base, files)


def _build_shard(base: dict[str, Any], dim: int, existing, gone_ids, vectors, ids, threads: int):
    """A Ray task: one shard built or updated; returns ``(index bytes, ids, files)``, or ``(None, None, why)``
    when the shard sent cannot be opened (the driver then rebuilds everything)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vecmetric-shard-") as tmp:
        folder = Path(tmp)
        if existing is None:
            params = IndexParams(base["metric"], base["M"], base["ef_construction"], base["ef"])
            index = HnswIndex.create(folder, dim, params, capacity=len(ids))
        else:
            try:
                index = _open_from_bytes(folder, base, existing)
            except IndexStateError as exc:
                return None, None, exc.message
        if len(gone_ids):
            index.mark_deleted(gone_ids)
        if len(ids):
            index.add(vectors, ids, threads=threads)
        files = index.write_generation("built")
        return (folder / "hnsw-built.bin").read_bytes(), index.ids, files


def _servable_sidecar(store, update: bool) -> dict[str, Any]:
    """The sidecar of the index to serve: brought up to date first (``update``), else the committed one as it is."""
    from ._build import load_current_index
    from ._status import IndexStatus, index_status

    if update:
        return load_current_index(store).sidecar
    status = index_status(store)
    if status.status not in (IndexStatus.CURRENT, IndexStatus.STALE):
        raise IndexStateError(f"the index of {store.path} is {status.status.value}: {status.reason}", hint="run 'vecmetric index'")
    return status.sidecar


class _ShardActor:
    """Holds one shard in memory and answers queries on it."""

    def __init__(self, base: dict[str, Any], existing, threads: int):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="vecmetric-shard-") as tmp:
            self.shard = _open_from_bytes(Path(tmp), base, existing)  # in memory: the files can go
        self.threads = threads

    def count(self) -> int:
        return self.shard.count

    def query(self, vectors, k: int, ef: int | None, filter):
        return self.shard.query(vectors, k, ef=ef, filter=filter, threads=self.threads)

    def ids(self):
        return self.shard.ids

    def vectors_of(self, labels):
        return held_vectors(self.shard, labels)

    def mark_deleted(self, labels) -> int:
        import numpy as np

        mine = np.asarray(labels, dtype=np.int64)[np.isin(labels, self.shard.ids)]
        self.shard.mark_deleted(mine)
        return self.shard.count


class RayShardedIndex:
    """A store's current index with each shard in a Ray actor: the query interface of ``HnswIndex``.

    Each actor asks Ray for the memory its shard needs and actors are spread over the nodes, so
    the shards of an index larger than one machine's memory land on several machines. The shard
    files are read here and sent through Ray's object store: the store need not be on a shared
    file system. Use it as a context manager, or call ``close``.

    Args:
        store: an open store; its index is built or updated first when it is not current.
        address: the Ray cluster (None: a loopback-only local instance, stopped by ``close``).
        actor_cpus: CPUs each shard actor reserves at most (fractions let many share a core); less
            when the cluster's CPUs divided by the shard count is less.
        threads: hnswlib threads per query in each actor.
        start_timeout: seconds for every actor to be placed and loaded before giving up.
        update: bring a stale index up to date first (under the store's lock); False serves the
            committed index as it is (a server's ``LiveIndex`` adds the rows written since).

    Raises:
        EngineError: Ray is missing, or the cluster cannot hold the shards (not enough memory for all
            of them: their actors wait to be placed until ``start_timeout``).
        IndexStateError: the index cannot be brought up to date or its files are damaged.
    """

    def __init__(
        self, store, address: str | None = None, actor_cpus: float = ACTOR_CPUS, threads: int = 1, start_timeout: float = ACTOR_START_TIMEOUT, update: bool = True
    ):
        self._exit = contextlib.ExitStack()
        self.sidecar = _servable_sidecar(store, update)  # readable (and current when asked) before anything is sent
        self._ids = None
        entries = self.sidecar["shards"] if shard_count(self.sidecar) > 1 else [self.sidecar]
        ray = self._exit.enter_context(ray_session(address))
        self._ray = ray
        try:
            actor = ray.remote(_ShardActor)
            cpus = min(actor_cpus, float(ray.cluster_resources().get("CPU", 1.0)) / len(entries))
            self._actors, memory = [], 0
            for entry in entries:
                existing = _read_files(store.index_dir, entry)
                needs = int(len(existing[1] or b"") * MEMORY_MARGIN) + 64 * 2**20
                memory += needs
                options = {"num_cpus": round(cpus, 4), "memory": needs, "scheduling_strategy": "SPREAD", "max_restarts": 0}
                self._actors.append(actor.options(**options).remote(self.sidecar, existing, threads))
            self._counts = ray.get([a.count.remote() for a in self._actors], timeout=start_timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise EngineError(
                f"the Ray cluster did not place the index's {len(entries)} shard actors in {start_timeout:g} s",
                hint=f"they need {memory / 2**30:.1f} GiB of memory in all; add nodes or memory, or use fewer, larger shards",
            ) from None
        except ray.exceptions.RayError as exc:
            self.close()
            raise EngineError(f"the Ray cluster cannot hold the index's shards: {str(exc).strip().splitlines()[0][:300]}") from exc
        except BaseException:
            self.close()
            raise

    @property
    def metric(self) -> str:
        return self.sidecar["metric"]

    @property
    def count(self) -> int:
        return int(sum(self._counts))

    @property
    def shards(self) -> int:
        return len(self._actors)

    @property
    def ids(self):
        """Every shard's live row ids, sorted (asked of the actors once, then kept up to date here)."""
        import numpy as np

        if self._ids is None:
            found = self._call(lambda a: a.ids.remote())
            self._ids = np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
        return self._ids

    def has(self, label: int) -> bool:
        """Whether ``label`` is a live vector of any shard."""
        import numpy as np

        at = int(np.searchsorted(self.ids, label))
        return at < len(self.ids) and int(self.ids[at]) == int(label)

    def vectors(self, labels):
        """The stored vectors of ``labels``, from the actors that hold them (see ``HnswIndex.vectors``).

        Raises:
            KeyError: a label is in no shard.
        """
        import numpy as np

        labels = np.asarray([int(x) for x in labels], dtype=np.int64)
        return gather_vectors(labels, self._call(lambda a: a.vectors_of.remote(labels)), int(self.sidecar["dim"]))

    def mark_deleted(self, labels) -> None:
        """Hide ``labels`` in the actors' in-memory shards (the files are not touched)."""
        import numpy as np

        labels = np.asarray([int(x) for x in labels], dtype=np.int64)
        self._counts = self._call(lambda a: a.mark_deleted.remote(labels))
        if self._ids is not None:
            self._ids = np.setdiff1d(self._ids, labels)

    def _call(self, remote, actors=None) -> list:
        """``ray.get`` of ``remote(actor)`` for every actor (or those of ``actors``), a failed actor one ``EngineError``."""
        try:
            return self._ray.get([remote(actor) for actor in (self._actors if actors is None else actors)])
        except self._ray.exceptions.RayError as exc:
            raise EngineError(f"a shard actor failed: {str(exc).strip().splitlines()[0][:300]}") from exc

    def query(self, vectors, k: int, ef: int | None = None, filter=None, threads: int | None = None):
        """``(labels, distances)`` of the ``k`` nearest live vectors over every shard (see ``HnswIndex.query``;
        ``threads`` is the actors' own, set when they started)."""
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        live = [a for a, n in zip(self._actors, self._counts) if n]
        if not live:
            empty = np.zeros((len(vectors), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        answers = self._call(lambda a: a.query.remote(vectors, k, ef, filter), live)
        return merge_top_k([a[0] for a in answers], [a[1] for a in answers], k)

    def close(self) -> None:
        """Stop the actors (and the local Ray instance this object started)."""
        for actor in getattr(self, "_actors", []):
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        self._actors = []
        self._exit.close()

    def __enter__(self) -> "RayShardedIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def live_ray_index(path, address: str | None = None):
    """A ``LiveIndex`` of the store at ``path`` whose committed shards are held in Ray actors
    (``serve --engine ray``): each new index generation gets new actors, the old ones are stopped.

    Raises:
        EngineError: Ray is missing, or the cluster cannot hold the shards.
    """
    from .._ray_session import require_ray
    from ._live import LiveIndex

    require_ray()
    return LiveIndex(path, open_index=lambda store: RayShardedIndex(store, address=address, update=False))
