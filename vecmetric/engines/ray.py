"""The Ray engine of ``embed``: read, hash and decode in Ray Data tasks, embed in an actor pool.

The driver (the process running ``embed``) scans, plans and writes exactly as with the local
engine; this module only turns the planned files into ``Outcome``s, streamed back as batches
finish, so the writer can flush as it goes. The folder must be readable at the same path on
every node (a shared or network file system); the store stays where the driver runs.

Without an address, a local Ray instance is started for the run and stopped after it, on
loopback only (``vecmetric._ray_session``). Ray is imported only inside functions: it is an
optional extra.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .._ray_session import INSTALL_HINT, ray_session, require_ray
from ..errors import EncoderError, EngineError
from ..progress import Reporter, reporter_or_default
from ._outcome import Outcome

if TYPE_CHECKING:
    from ..encoders import PreprocessConfig
    from ..store import FileEntry

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
# An actor lost with its process or node is recreated (Ray Data: without limit) and its batch rerun,
# at most BATCH_RETRIES times: a batch that kills every actor it lands on (a GPU driver fault, memory)
# fails the run instead of looping. A lost decode task reruns (Ray: 3 times). An exception raised by
# our code is not retried; a bad image is an outcome, never an exception.
BATCH_RETRIES = 3

__all__ = ["INSTALL_HINT", "ray_embed_outcomes", "require_ray"]


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
    export_folder: str | None = None,
    reporter: Reporter | None = None,
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
        precision: ``fp32``, ``bf16`` or ``auto`` (each actor settles it for its own device, as the
            local engine does for its device).
        batch_size: images per forward pass.
        address: a Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None starts a local
            instance on loopback only, with every CPU of this machine.
        gpus_per_worker: GPUs per actor (fractions share a GPU); 0 embeds on CPUs.
        workers: actors at most (default: one per ``gpus_per_worker`` of the cluster's GPUs, else
            one per 8 CPUs).
        preprocess: the model's ``PreprocessConfig`` (default: loaded from ``model_spec`` here, on CPU).
        fingerprint: the store's model fingerprint; an actor whose weights differ refuses to embed.
        allow_pickle_files: see ``load_encoder``.
        export_folder: the store's ONNX export (``STORE/_model``) when its vectors are made by onnxruntime:
            CPU actors receive its files and run it (no torch), so their vectors are the local engine's.
        reporter: advanced as each batch of outcomes arrives.

    Returns:
        An iterator of ``Outcome``; every index of ``files`` appears exactly once.

    Raises:
        EngineError: Ray is missing, the cluster cannot be reached or lacks the GPUs asked for,
            or the run failed beyond Ray's retries (a batch is run at most ``1 + BATCH_RETRIES`` times).
        EncoderError: an actor loaded weights other than ``fingerprint``.
    """
    require_ray()
    if not files:
        return iter(())
    if preprocess is None:
        from ..encoders import load_encoder

        preprocess = load_encoder(model_spec, device="cpu", precision="fp32", allow_pickle_files=allow_pickle_files).preprocess
    model = {"spec": model_spec, "precision": precision, "fingerprint": fingerprint, "allow_pickle_files": allow_pickle_files}
    if export_folder is not None and gpus_per_worker == 0:
        model["export"] = {p.name: p.read_bytes() for p in Path(export_folder).iterdir() if p.is_file()}
    pool = {"batch_size": batch_size, "gpus_per_worker": gpus_per_worker, "workers": workers, "worker_class": _EmbedWorker}
    return _stream(list(files), _KnownHashes(known_hashes), preprocess, model, pool, address, reporter_or_default(reporter))


def _stream(files, known, preprocess, model: dict, pool: dict, address: str | None, reporter: Reporter) -> Iterator[Outcome]:
    with ray_session(address) as ray:
        size, threads = _pool_shape(ray.cluster_resources(), pool["workers"], pool["gpus_per_worker"])
        model = {**model, "threads": threads, "device": "cuda" if pool["gpus_per_worker"] > 0 else "cpu"}
        ds = _dataset(ray, files, known, preprocess, model, pool, size)
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
            reporter.advance(len(batch["index"]))
        missing = len(files) - sum(seen)
        if missing:
            raise EngineError(f"the Ray run ended with {missing} of {len(files)} files not done", hint="run embed again")


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


def _dataset(ray, files, known, preprocess, model: dict, pool: dict, size: int):
    import warnings

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per_task = min(MAX_FILES_PER_TASK, max(MIN_FILES_PER_TASK, len(files) // (4 * cpus)))
    items = [{"index": i, "path": f.path} for i, f in enumerate(files)]
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
    with warnings.catch_warnings():
        # max_task_retries has no named parameter in Ray 2.60 (the pinned version) and passing it warns
        # that the catch-all will go; without it Ray Data retries an actor's batch forever.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(
            pool["worker_class"],
            batch_size=pool["batch_size"],
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size),
            fn_constructor_kwargs={"model": model},
            num_cpus=WORKER_CPUS,
            num_gpus=pool["gpus_per_worker"] or None,
            max_task_retries=BATCH_RETRIES,
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

    from .local import read_and_decode

    n, side = len(batch["path"]), preprocess.image_size
    pixels = np.zeros((n, 3, side, side), np.uint8)
    decoded = np.zeros(n, bool)
    hashes, errors = [""] * n, [""] * n
    for j, path in enumerate(batch["path"]):
        digest, payload, error = read_and_decode(str(path), preprocess, known)
        hashes[j], errors[j] = digest or "", error or ""
        if payload is not None:
            pixels[j], decoded[j] = payload, True
    return {"index": batch["index"], "hash": np.array(hashes), "error": np.array(errors), "decoded": decoded, "pixels": pixels}


def _actor_encoder(model: dict[str, Any]):
    """An actor's model: the store's ONNX export when the driver sent its files, else the torch model."""
    if model.get("export"):
        import tempfile

        from ..runtime import load_export

        folder = Path(tempfile.mkdtemp(prefix="vecmetric-export-"))
        for name, data in model["export"].items():
            (folder / name).write_bytes(data)
        encoder = load_export(folder, model["fingerprint"], threads=model["threads"])
        encoder.prepare("image")  # the graph's bytes are read (and checked) now: the folder can go
        shutil.rmtree(folder, ignore_errors=True)
        return encoder
    import torch

    from ..encoders import load_encoder

    torch.set_num_threads(model["threads"])  # Ray sets OMP_NUM_THREADS=1 in its workers
    return load_encoder(model["spec"], device=model["device"], precision=model["precision"], allow_pickle_files=model["allow_pickle_files"])


class _EmbedWorker:
    """A Ray Data actor: loads the model once, then embeds the decoded rows of each batch."""

    def __init__(self, model: dict[str, Any]):
        self.encoder = _actor_encoder(model)
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
