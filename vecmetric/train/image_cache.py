"""Decoded training images kept in memory, so that each step only crops and resizes.

Reading and decoding a file is most of what a training sample costs (on 105x105 PNGs, 0.2 of
0.4 ms; far more on photos), and it is the same work every epoch. The cache decodes each image
once, exactly as ``TrainImages`` would (same function, same draft scale), into one flat uint8
buffer; the augmentation then starts from identical pixels, so a run gives the same numbers
with or without it. With DataLoader workers the buffer lives in shared memory, one copy for all
of them, whatever the multiprocessing start method.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from .._system import decode_threads
from ..errors import TrainError
from ..images import ImageDecodeError, decode_image, decoded_size

__all__ = ["CACHE_MODES", "ImageCache", "CachePlan", "plan_image_cache", "build_image_cache", "available_memory"]

CACHE_MODES = ("auto", "ram", "off")
AUTO_MEMORY_SHARE = 0.25  # ``auto`` caches when the decoded images fit in this share of the free memory
HEADER_SAMPLE = 1000  # ``auto`` first estimates a large folder's size from this many headers
SHM_PATH = "/dev/shm"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes of memory this process can still use: the system's free memory, or the container's
    (cgroup v2) limit minus its use when that is lower; None where neither can be read."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # macOS: total memory
        except (ValueError, OSError, AttributeError):
            pass
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        free = min(free, limit - used) if free is not None else limit - used
    return free


def shared_memory_free() -> int | None:
    """Free bytes in ``/dev/shm`` (Linux; containers often give it 64 MB), None where there is none."""
    try:
        stats = os.statvfs(SHM_PATH)
    except (OSError, AttributeError):
        return None
    return stats.f_bavail * stats.f_frsize


@dataclass
class ImageCache:
    """Every image of a set, decoded to RGB, back to back in one uint8 buffer.

    Attributes:
        buffer: a 1-D uint8 torch tensor (in shared memory when workers read it).
        offsets: int64 array; ``offsets[i]:offsets[i + 1]`` are image ``i``'s bytes.
        sizes: ``(n, 2)`` array of each image's width and height.
    """

    buffer: object
    offsets: object
    sizes: object

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1])

    def image(self, index: int):
        """Image ``index`` as the RGB ``PIL.Image`` that decoding its file gives."""
        from PIL import Image

        view = self.__dict__.get("_view")
        if view is None:  # per process: a numpy view of the (possibly shared) buffer
            view = self.__dict__["_view"] = self.buffer.numpy()
        width, height = self.sizes[index]
        return Image.fromarray(view[self.offsets[index] : self.offsets[index + 1]].reshape(height, width, 3))

    def __getstate__(self):
        return {"buffer": self.buffer, "offsets": self.offsets, "sizes": self.sizes}


@dataclass
class CachePlan:
    """Whether to cache, and why: ``sizes`` and ``nbytes`` describe the decoded images."""

    cache: bool
    sizes: list[tuple[int, int]]
    nbytes: int
    reason: str


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


@dataclass(frozen=True)
class _Limit:
    """A memory that the cache must fit in: how much is free, the share ``auto`` may use, and how to make room."""

    free: int | None
    name: str
    auto_share: float
    budget_name: str
    ram_hint: str

    @property
    def budget(self) -> float | None:
        return self.free * self.auto_share if self.free else None


def plan_image_cache(paths: Sequence[str], min_size: int, mode: str, *, shared: bool, processes: int = 1, threads: int | None = None) -> CachePlan:
    """Read the images' headers and decide whether their decoded pixels go in memory.

    Args:
        paths: the training images.
        min_size: the size they are decoded for (JPEGs decode at a reduced scale).
        mode: ``auto`` (cache when they fit in a quarter of the free memory and half the free
            shared memory), ``ram`` (cache unless they cannot fit at all) or ``off``.
        shared: DataLoader workers will read the cache (it must go in shared memory).
        processes: training processes on this machine, each with its own cache (DDP).

    Raises:
        TrainError: ``mode`` is ``ram`` and the images cannot fit; a file became unreadable.
    """
    if mode not in CACHE_MODES:
        raise TrainError(f"unknown --cache {mode!r}", hint="choose one of: " + ", ".join(CACHE_MODES))
    if mode == "off" or not paths:
        return CachePlan(False, [], 0, "off")

    def size(path: str) -> tuple[int, int]:
        try:
            return decoded_size(path, min_size)
        except (OSError, ImageDecodeError) as exc:
            raise TrainError(f"cannot read {path} (changed since the scan?): {exc}") from None

    processes = max(1, processes)
    limits = [
        _Limit(available_memory(), "the free memory", AUTO_MEMORY_SHARE, "a quarter of the free memory", "use --cache off"),
        _Limit(
            shared_memory_free() if shared else None,
            f"the free shared memory ({SHM_PATH})",
            0.5,
            f"half the free {SHM_PATH}",
            "use --cache off, --workers 0 or a larger /dev/shm (docker --shm-size)",
        ),
    ]
    with ThreadPoolExecutor(max_workers=threads or decode_threads()) as pool:
        if mode == "auto" and len(paths) > 4 * HEADER_SAMPLE:
            # A large folder that clearly cannot fit is declined from a sample of its headers.
            sample = random.Random(0).sample(list(paths), HEADER_SAMPLE)
            estimate = sum(3 * w * h for w, h in pool.map(size, sample)) / HEADER_SAMPLE * len(paths) * processes
            for limit in limits:
                if limit.budget and estimate > 2 * limit.budget:
                    return CachePlan(False, [], 0, f"about {_gb(estimate)} is more than {limit.budget_name} (--cache ram to force it)")
        sizes = list(pool.map(size, paths, chunksize=256))
    nbytes = sum(3 * w * h for w, h in sizes)
    needed = nbytes * processes
    for limit in limits:
        if limit.free is not None and needed > limit.free:
            if mode == "ram":
                raise TrainError(f"--cache ram: the decoded images need {_gb(needed)}, more than {limit.name}, {_gb(limit.free)}", hint=limit.ram_hint)
            return CachePlan(False, sizes, nbytes, f"{_gb(needed)} would not fit in {limit.name}")
    if mode == "auto":
        for limit in limits:
            if limit.budget and needed > limit.budget:
                return CachePlan(False, sizes, nbytes, f"{_gb(needed)} is more than {limit.budget_name} (--cache ram to force it)")
    return CachePlan(True, sizes, nbytes, f"{_gb(nbytes)}")


def build_image_cache(paths: Sequence[str], plan: CachePlan, min_size: int, *, shared: bool, threads: int | None = None) -> ImageCache:
    """Decode ``paths`` into one buffer, as ``decode_image(data, min_size)`` does.

    Raises:
        TrainError: a file changed or became unreadable since the scan.
    """
    import numpy as np
    import torch

    sizes = np.asarray(plan.sizes, dtype=np.int64).reshape(-1, 2)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(3 * sizes[:, 0] * sizes[:, 1], out=offsets[1:])
    buffer = torch.empty(int(offsets[-1]), dtype=torch.uint8)
    if shared:
        buffer.share_memory_()
    view = buffer.numpy()

    def fill(index: int) -> None:
        path = paths[index]
        try:
            with open(path, "rb") as fh:
                img = decode_image(fh.read(), min_size=min_size)
        except (OSError, ImageDecodeError) as exc:
            raise TrainError(f"cannot read {path} (changed since the scan?): {exc}") from None
        if img.size != tuple(sizes[index]):
            raise TrainError(f"{path} changed while training started (its size is now {img.width}x{img.height})")
        view[offsets[index] : offsets[index + 1]] = np.asarray(img, dtype=np.uint8).reshape(-1)

    with ThreadPoolExecutor(max_workers=threads or decode_threads()) as pool:
        for _ in pool.map(fill, range(len(paths)), chunksize=64):
            pass
    return ImageCache(buffer, offsets, sizes)
