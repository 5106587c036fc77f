"""Which engine turns ``embed``'s planned files into outcomes: the one place that picks it."""

from __future__ import annotations

from typing import Iterator, Sequence

from ..errors import InputError
from ..progress import Reporter, reporter_or_default
from ._outcome import ENGINES, Outcome

__all__ = ["check_engine", "driver_device", "engine_outcomes"]


def check_engine(engine: str, *, device: str = "auto", decode: str = "auto", gpus_per_worker: float = 0.0) -> None:
    """Refuse an unknown engine, a missing Ray, or options the engine cannot honour, before any work.

    Raises:
        InputError: unknown ``engine``; with ``ray``, a ``--device`` or ``--decode device`` (Ray's
            actors run where ``gpus_per_worker`` puts them, and decode on CPUs); with ``local``,
            a ``gpus_per_worker``.
        EngineError: ``ray`` is asked for and not installed.
    """
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "local":
        if gpus_per_worker:
            raise InputError("--gpus-per-worker applies to --engine ray", hint="use --device with the local engine")
        return
    from .ray import require_ray

    require_ray()
    if device not in ("auto", "cpu"):
        raise InputError(f"--device {device} applies to the local engine", hint="with --engine ray, --gpus-per-worker puts the model on GPUs")
    if decode == "device":
        raise InputError("--decode device applies to the local engine", hint="the ray engine decodes in CPU tasks")
    if gpus_per_worker < 0:
        raise InputError("--gpus-per-worker must be 0 or more")


def driver_device(engine: str, device: str) -> str:
    """Where the embedding process loads the model: the local engine's device; with Ray only the
    CPU (the driver needs the model's description and preprocessing, the actors do the work)."""
    return "cpu" if engine == "ray" else device


def engine_outcomes(
    files: Sequence,
    known_hashes: frozenset[str],
    encoder,
    *,
    engine: str = "local",
    batch_size: int = 64,
    workers: int | None = None,
    decode: str = "auto",
    address: str | None = None,
    gpus_per_worker: float = 0.0,
    precision: str = "auto",
    allow_pickle_files: bool = False,
    reporter: Reporter | None = None,
) -> Iterator[Outcome]:
    """One ``Outcome`` per file of ``files``, from the engine asked for.

    Args:
        files, known_hashes: the planner's files to embed and the content hashes the store keeps.
        encoder: the driver's encoder (the local engine embeds with it; Ray's actors load its
            ``spec`` and must reproduce its ``fingerprint``).
        engine: ``local`` or ``ray``.
        batch_size: images per forward pass.
        workers: local: decoding processes; ray: embedding actors at most.
        decode: the local engine's JPEG decoding place (see ``local_outcomes``).
        address, gpus_per_worker: the Ray cluster and GPUs per actor (see ``ray_embed_outcomes``).
        precision: the precision asked for; Ray's actors resolve ``auto`` on their own device.
        allow_pickle_files: see ``load_encoder``.
        reporter: advanced as files are done.

    Raises:
        InputError, EngineError, EncoderError: see ``local_outcomes`` and ``ray_embed_outcomes``.
    """
    reporter = reporter_or_default(reporter)
    if engine == "local":
        from .local import local_outcomes

        return local_outcomes(files, known_hashes, encoder, batch_size=batch_size, workers=workers, decode=decode, reporter=reporter)
    from .ray import ray_embed_outcomes

    return ray_embed_outcomes(
        list(files),
        known_hashes,
        encoder.spec,
        precision=precision,
        batch_size=batch_size,
        address=address,
        gpus_per_worker=gpus_per_worker,
        workers=workers,
        preprocess=encoder.preprocess,
        fingerprint=encoder.fingerprint,
        allow_pickle_files=allow_pickle_files,
        export_folder=getattr(getattr(encoder, "info", None), "folder", None),  # an onnxruntime store's export
        reporter=reporter,
    )
