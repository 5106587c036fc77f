"""The local engine: DataLoader worker processes read, hash and decode; this process embeds.

With the model on CUDA, JPEGs the GPU can take travel as raw bytes and are decoded there
(nvJPEG, ``vecmetric._device_decode``); everything else is decoded by the workers.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

from .._device_decode import DeviceJpegDecoder, assemble_batch, device_decodable, device_decode_available
from .._system import loader_workers
from ..errors import InputError
from ..images import ImageDecodeError, decode_and_preprocess
from ..progress import Reporter, reporter_or_default
from ..store import FileEntry, content_hash
from ._outcome import Outcome

__all__ = ["DECODE_CHOICES", "local_outcomes", "read_and_decode"]

DECODE_CHOICES = ("auto", "cpu", "device")
WORKER_TIMEOUT = float(os.environ.get("VECMETRIC_WORKER_TIMEOUT", 300))  # seconds without a batch


def read_and_decode(path: str, preprocess, known_hashes: frozenset[str], device_jpeg: bool = False):
    """Read, hash and (unless the hash is known) decode one file, as every engine does.

    Returns:
        ``(content_hash, payload, error)``: payload is the uint8 (3, S, S) array, or with
        ``device_jpeg`` a ``(bytes tensor, pixel count)`` pair for a JPEG the GPU can decode,
        or None (known hash, or error). A bad file is an error string, never an exception.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return None, None, f"cannot read: {exc.strerror or exc}"
    digest = content_hash(data)
    if digest in known_hashes:
        return digest, None, None
    pixel_count = device_decodable(data) if device_jpeg else None
    if pixel_count:
        import torch

        return digest, (torch.frombuffer(bytearray(data), dtype=torch.uint8), pixel_count), None
    try:
        return digest, decode_and_preprocess(data, preprocess), None
    except ImageDecodeError as exc:
        return digest, None, str(exc)


class _DecodeDataset:
    """``read_and_decode`` for each file, in DataLoader workers."""

    def __init__(self, files: Sequence[FileEntry], preprocess, known_hashes: frozenset[str], device_jpeg: bool = False):
        self.files = files
        self.preprocess = preprocess
        self.known_hashes = known_hashes
        self.device_jpeg = device_jpeg

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return (i, *read_and_decode(self.files[i].path, self.preprocess, self.known_hashes, self.device_jpeg))


def _collate(items):
    """(meta, pixels, jpegs): meta holds (index, hash, kind, error) per item, kind being
    "pixels" (a row of ``pixels``), "jpeg" (bytes to decode, a slice of ``jpegs``) or None.

    ``jpegs`` is (buffer, sizes, pixel_counts): every JPEG of the batch in one tensor, because
    each tensor a worker hands over costs a shared-memory file and a file descriptor.
    """
    import numpy as np
    import torch

    meta, pixels, blobs, pixel_counts = [], [], [], []
    for i, digest, payload, err in items:
        kind = None
        if isinstance(payload, tuple):
            kind = "jpeg"
            blobs.append(payload[0])
            pixel_counts.append(payload[1])
        elif payload is not None:
            kind = "pixels"
            pixels.append(payload)
        meta.append((i, digest, kind, err))
    jpegs = (torch.cat(blobs), [len(b) for b in blobs], pixel_counts) if blobs else None
    return meta, torch.from_numpy(np.stack(pixels)) if pixels else None, jpegs


def _batches(loader):
    """Iterate a DataLoader, turning a failure of its machinery into one clear error.

    Every bad file is reported by ``read_and_decode`` as a value, so a ``RuntimeError`` here comes
    from the workers themselves: a timeout, a full /dev/shm, a worker killed by the system.
    """
    try:
        yield from loader
    except RuntimeError as exc:
        first_line = (str(exc).strip().splitlines() or ["no message"])[0]
        raise InputError(
            f"the decoding workers stopped answering ({first_line})",
            hint="shared memory (/dev/shm) may be full or too small; run with --workers 0, or free space; work so far is kept",
        ) from None


def device_decoder(encoder, decode: str):
    """The GPU JPEG decoder ``decode`` asks for, or None to decode on the CPU.

    Raises:
        InputError: ``decode`` is not a choice, or ``device`` was asked for and the GPU cannot decode here.
    """
    if decode not in DECODE_CHOICES:
        raise InputError(f"--decode must be auto, cpu or device, not {decode!r}")
    device = getattr(encoder, "device", None)
    if decode == "cpu" or (decode == "auto" and (device is None or device.type != "cuda")):
        return None
    if device is None or not device_decode_available(device):
        if decode == "device":
            raise InputError(
                f"torchvision cannot decode JPEGs on {device or 'the CPU'} here", hint="use --decode cpu (or auto, which falls back by itself)"
            )
        return None
    return DeviceJpegDecoder(device, encoder.preprocess)


def local_outcomes(
    files: Sequence[FileEntry],
    known_hashes: frozenset[str],
    encoder,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    decode: str = "auto",
    reporter: Reporter | None = None,
) -> Iterator[Outcome]:
    """Embed ``files`` with ``encoder`` in this process, decoding in worker processes; one ``Outcome`` per file, in order.

    Args:
        files: what the planner wants embedded.
        known_hashes: content hashes the store already holds (not decoded: their vectors are reused).
        encoder: the loaded model (``embed_tensors`` takes uint8 batches).
        batch_size: images per forward pass.
        workers: decoding processes (default ``_system.loader_workers``; 0 decodes in this process).
        decode: ``cpu``, ``device`` (JPEGs on the encoder's GPU) or ``auto``.
        reporter: advanced once per batch.

    Raises:
        InputError: the workers stopped answering, or ``decode`` cannot be honoured.
    """
    import torch

    from .._background import read_ahead

    reporter = reporter_or_default(reporter)
    device = getattr(encoder, "device", None)  # onnxruntime runs on the CPU and has none
    decoder = device_decoder(encoder, decode)
    n_workers = loader_workers(device, device_decode=decoder is not None) if workers is None else workers
    loader = torch.utils.data.DataLoader(
        _DecodeDataset(files, encoder.preprocess, known_hashes, device_jpeg=decoder is not None),
        batch_size=batch_size,
        shuffle=False,
        num_workers=n_workers,
        collate_fn=_collate,
        prefetch_factor=4 if n_workers else None,
        persistent_workers=False,
        # Pinning helps the pixel batches of CPU decoding; JPEG bytes go to nvJPEG from any memory.
        pin_memory=device is not None and device.type == "cuda" and decoder is None,
        # A worker that cannot hand a batch over (e.g. /dev/shm full) would otherwise leave this process waiting forever.
        timeout=WORKER_TIMEOUT if n_workers else 0,
    )
    batches = (assemble_batch(*item, decoder, device) for item in _batches(loader))
    if decoder is not None:
        batches = read_ahead(batches, depth=3, name="vecmetric-device-decode")
    for meta, batch in batches:
        vectors = encoder.embed_tensors(batch) if batch is not None else None
        row = 0
        for i, digest, decoded, error in meta:
            if decoded:
                yield Outcome(i, digest, vectors[row], None)
                row += 1
            else:
                yield Outcome(i, digest, None, error)
        reporter.advance(len(meta))
