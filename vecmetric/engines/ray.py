"""The Ray engine of ``embed``: read, hash and decode in Ray Data tasks, embed in an actor pool.

The driver (the process running ``embed``) scans, plans and writes exactly as with the local
engine; this module only turns the planned files into ``Outcome``s, streamed back as batches
finish, so the writer can flush as it goes. The folder must be readable at the same path on
every node (a shared or network file system); the store stays where the driver runs.

Without an address, a local Ray instance is started for the run and stopped after it. It is
kept on loopback: every Ray server binds to 127.0.0.1 and no outside address is probed (see
``_LOCAL_ENV``). A process already connected to Ray (its own ``ray.init``) has that connection
used and left open. Ray is imported only inside functions: it is an optional extra.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ..errors import EncoderError, EngineError
from ._outcome import Outcome

if TYPE_CHECKING:
    from ..encoders import PreprocessConfig
    from ..store import FileEntry

INSTALL_HINT = "pip install 'vecmetric[ray]'"
SAME_MODEL_HINT = "every node must see the same checkpoint folder and library versions"
MAX_FILES_PER_TASK = 256  # files one decode task reads: a task costs ~ms to schedule; blocks stay ~40 MB at 224 px
MIN_FILES_PER_TASK = 16
# A decode task is one Pillow thread: one CPU. Differing from WORKER_CPUS also keeps Ray Data from
# fusing decoding into the actors (it fuses maps whose remote arguments agree), which would decode
# on the GPU workers' one process and leave the other cores idle.
DECODE_CPUS = 1.0
# Fractional: on a 2-CPU machine two actors asking one CPU each leave none for the decode tasks
# feeding them, and Ray waits forever without a word.
WORKER_CPUS = 0.5
MAX_THREADS = 8  # torch threads per CPU actor; more actors rather than more threads beyond that
# Retries are Ray Data's defaults (the per-call settings are deprecated in Ray 2.60): an actor lost with
# its process or node is recreated and its batches rerun, a lost decode task reruns (Ray: 3 times),
# and an exception raised by our code is not retried. A bad image is an outcome, never an exception.
_LOCAL_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray turns a node address of 127.0.0.1 into "the address other machines reach", found by
    # routing a UDP socket towards 8.8.8.8, and then listens on every interface. With this off
    # (read once, when ray is imported) 127.0.0.1 stays the node address and the servers bind to it.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def require_ray() -> None:
    """Check that the optional Ray extra is installed, without importing it.

    Raises:
        EngineError: Ray is missing, with the command that installs it.
    """
    if importlib.util.find_spec("ray") is None:
        raise EngineError("the ray engine needs Ray, which is not installed", hint=f"install it with: {INSTALL_HINT}")


def ray_embed_outcomes(
    files: list[FileEntry],
    known_hashes: Iterable[str],
    model_spec: str,
    *,
    precision: str,
    batch_size: int = 64,
    address: str | None = None,
    gpus_per_worker: float = 0.0,
    workers: int | None = None,
    preprocess: PreprocessConfig | None = None,
    fingerprint: str | None = None,
    allow_pickle_files: bool = False,
) -> Iterator[Outcome]:
    """Embed ``files`` on a Ray cluster, yielding one ``Outcome`` per file in completion order.

    Decode tasks read each file, hash it (``content_hash``), skip decoding when the hash is in
    ``known_hashes`` and otherwise decode and preprocess it; actors (one model each, loaded from
    ``model_spec``) embed the decoded batches. A lost worker or node is retried by Ray; a file
    that cannot be read or decoded is an outcome with its reason. Ray is started (and stopped) on
    the first ``next()`` unless this process is already connected to Ray.

    Args:
        files: ``FileEntry`` items (path, size, mtime_ns, label); paths must be readable on every node.
        known_hashes: content hashes the store already holds (their files are hashed, not decoded).
        model_spec: the spec each actor loads; pass ``encoder.spec`` of the driver's encoder.
        precision: ``fp32`` or ``bf16``; pass the driver's resolved precision so every actor agrees.
        batch_size: images per forward pass.
        address: a Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None starts a local
            instance on loopback only, with every CPU of this machine.
        gpus_per_worker: GPUs per actor (fractions share a GPU); 0 embeds on CPUs.
        workers: actors at most (default: one per ``gpus_per_worker`` of the cluster's GPUs, else
            one per 8 CPUs).
        preprocess: the model's ``PreprocessConfig`` (default: loaded from ``model_spec`` here, on CPU).
        fingerprint: the store's model fingerprint; an actor whose weights differ refuses to embed.
        allow_pickle_files: see ``load_encoder``.

    Returns:
        An iterator of ``Outcome``; every index of ``files`` appears exactly once.

    Raises:
        EngineError: Ray is missing, the cluster cannot be reached or lacks the GPUs asked for,
            or the run failed beyond Ray's retries.
        EncoderError: an actor loaded weights other than ``fingerprint``.
    """
    require_ray()
    if not files:
        return iter(())
    if preprocess is None:
        from ..encoders import load_encoder

        preprocess = load_encoder(model_spec, device="cpu", precision="fp32", allow_pickle_files=allow_pickle_files).preprocess
    model = {"spec": model_spec, "precision": precision, "fingerprint": fingerprint, "allow_pickle_files": allow_pickle_files}
    return _stream(list(files), _KnownHashes(known_hashes), preprocess, model, batch_size, address, gpus_per_worker, workers)


def _stream(files, known, preprocess, model, batch_size, address, gpus_per_worker, workers) -> Iterator[Outcome]:
    ray = _import_ray(address)
    started = _connect(ray, address)
    try:
        size, threads = _pool_shape(ray.cluster_resources(), workers, gpus_per_worker)
        model = {**model, "threads": threads, "device": "cuda" if gpus_per_worker > 0 else "cpu"}
        ds = _dataset(ray, files, known, preprocess, model, batch_size, size, gpus_per_worker)
        seen = bytearray(len(files))
        for batch in _batches(ray, ds):
            if len(batch["refusal"]) and batch["refusal"][0]:
                raise EncoderError(str(batch["refusal"][0]), hint=SAME_MODEL_HINT)
            for index, digest, error, decoded, vector in zip(
                batch["index"], batch["hash"], batch["error"], batch["decoded"], batch["vector"]
            ):
                index = int(index)
                if seen[index]:  # a retried task may hand rows over again
                    continue
                seen[index] = 1
                yield Outcome(index, str(digest) or None, vector if decoded else None, str(error) or None)
        missing = len(files) - sum(seen)
        if missing:
            raise EngineError(f"the Ray run ended with {missing} of {len(files)} files not done", hint="run embed again")
    finally:
        if started:
            ray.shutdown()


def _import_ray(address: str | None):
    settings = {**_LOCAL_ENV} if address is None else {"RAY_USAGE_STATS_ENABLED": "0"}
    # Ray Data logs a few INFO lines per run on the console (and in its session log file); the CLI reports itself.
    settings["RAY_DATA_LOG_LEVEL"] = "WARNING"
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    try:
        import ray
        import ray.data  # noqa: F401  (the ray[data] extra: pyarrow, pandas, fsspec)
    except ImportError as exc:
        raise EngineError(f"the ray engine cannot import Ray ({exc})", hint=f"install it with: {INSTALL_HINT}") from None
    progress_logger = logging.getLogger("ray.data._internal.progress")
    if _no_progress_bar_hint not in progress_logger.filters:
        progress_logger.addFilter(_no_progress_bar_hint)
    return ray


def _no_progress_bar_hint(record: logging.LogRecord) -> bool:
    """Drop Ray Data's advice to turn its progress bars back on: they are off because the CLI draws its own."""
    return not str(record.msg).startswith("Progress bars disabled")


def _connect(ray, address: str | None) -> bool:
    """Connect to Ray; True when this call started the instance (and so must stop it)."""
    if ray.is_initialized():
        return False
    if address is None:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:  # ray was imported before _LOCAL_ENV could apply
            raise EngineError(
                "cannot start a loopback-only Ray instance: Ray was imported before vecmetric set it up",
                hint="set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray, or pass --address",
            )
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=logging.WARNING)
        return True
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    return True


def _pool_shape(resources: dict[str, float], workers: int | None, gpus_per_worker: float) -> tuple[int, int]:
    """(actors at most, torch threads per actor) for the cluster's resources."""
    cpus = max(1, int(resources.get("CPU", 1)))
    if gpus_per_worker > 0:
        gpus = resources.get("GPU", 0.0)
        if gpus < gpus_per_worker:
            raise EngineError(f"--gpus-per-worker {gpus_per_worker:g} asks for GPUs, and the Ray cluster has {gpus:g}")
        size = workers or max(1, int(gpus // gpus_per_worker))
    else:
        size = workers or max(1, cpus // MAX_THREADS)
    return size, max(1, min(MAX_THREADS, cpus // size))


def _dataset(ray, files, known, preprocess, model, batch_size: int, size: int, gpus_per_worker: float):
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per_task = min(MAX_FILES_PER_TASK, max(MIN_FILES_PER_TASK, len(files) // (4 * cpus)))
    items = [{"index": i, "path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "label": f.label} for i, f in enumerate(files)]
    ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(files) / per_task))
    ds.context.enable_progress_bars = False  # the CLI draws its own
    ds.context.print_on_execution_start = False
    ds = ds.map_batches(
        _decode_batch,
        batch_size=None,
        batch_format="numpy",
        fn_kwargs={"preprocess": preprocess, "known": known},
        num_cpus=DECODE_CPUS,
    )
    return ds.map_batches(
        _EmbedWorker,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size),
        fn_constructor_kwargs={"model": model},
        num_cpus=WORKER_CPUS,
        num_gpus=gpus_per_worker or None,
    )


def _batches(ray, ds) -> Iterator[dict[str, Any]]:
    """``ds``'s output blocks as numpy batches; a failed run as an ``EngineError``."""
    try:
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")
    except ray.exceptions.RayError as exc:
        raise EngineError(f"the Ray run failed: {str(exc).strip().splitlines()[0][:300]}") from exc


class _KnownHashes:
    """Set membership over a sorted numpy array of hex digests.

    Every decode task gets it through the object store without copying; a frozenset of a large
    store's hashes would be unpickled again by each task.
    """

    def __init__(self, hashes: Iterable[str]):
        import numpy as np

        self._sorted = np.array(sorted(h.encode("ascii") for h in hashes), dtype=np.bytes_)

    def __contains__(self, digest: str) -> bool:
        import numpy as np

        key = digest.encode("ascii")
        i = int(np.searchsorted(self._sorted, key))
        return i < len(self._sorted) and self._sorted[i] == key

    def __len__(self) -> int:
        return len(self._sorted)


def _decode_batch(batch: dict[str, Any], preprocess, known: _KnownHashes) -> dict[str, Any]:
    """A Ray Data task: read, hash and decode a block of files with the local engine's per-file code.

    Rows that are not decoded (known hash, or skipped) keep zero pixels and ``decoded`` False.
    Ray runs a task in its worker's main thread, so the SIGALRM decode time limit of
    ``decode_and_preprocess`` holds here (it would not in an actor, whose calls run in a thread).
    """
    import numpy as np

    from ..store._embed import _DecodeDataset
    from ..store._scan import FileEntry

    columns = zip(batch["path"], batch["size"], batch["mtime_ns"], batch["label"])
    entries = [FileEntry(str(path), int(size), int(mtime), str(label)) for path, size, mtime, label in columns]
    reader = _DecodeDataset(entries, preprocess, known)
    n, side = len(entries), preprocess.image_size
    pixels = np.zeros((n, 3, side, side), np.uint8)
    decoded = np.zeros(n, bool)
    hashes, errors = [""] * n, [""] * n
    for j in range(n):
        _, digest, payload, error = reader[j]
        hashes[j], errors[j] = digest or "", error or ""
        if payload is not None:
            pixels[j], decoded[j] = payload, True
    return {"index": batch["index"], "hash": np.array(hashes), "error": np.array(errors), "decoded": decoded, "pixels": pixels}


class _EmbedWorker:
    """A Ray Data actor: loads the model once, then embeds the decoded rows of each batch."""

    def __init__(self, model: dict[str, Any]):
        import torch

        from ..encoders import load_encoder

        torch.set_num_threads(model["threads"])  # Ray sets OMP_NUM_THREADS=1 in its workers
        self.encoder = load_encoder(
            model["spec"], device=model["device"], precision=model["precision"], allow_pickle_files=model["allow_pickle_files"]
        )
        self.refusal = ""
        if model["fingerprint"] and self.encoder.fingerprint != model["fingerprint"]:
            # Sent back as data for the driver to raise: an exception raised here reaches it only as text.
            spec, theirs = model["spec"], model["fingerprint"]
            self.refusal = f"model {spec} loads weights {self.encoder.fingerprint} on a Ray node, not the store's {theirs}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        decoded = batch["decoded"]
        vectors = np.zeros((len(decoded), self.encoder.dim), np.float32)
        if decoded.any() and not self.refusal:
            vectors[decoded] = self.encoder.embed_tensors(batch["pixels"][decoded])
        out = {key: batch[key] for key in ("index", "hash", "error")}
        return {**out, "decoded": decoded, "vector": vectors, "refusal": np.array([self.refusal] * len(decoded))}
