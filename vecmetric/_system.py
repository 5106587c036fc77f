"""How many CPUs this process may use, and the worker counts that follow from it."""

from __future__ import annotations

import os

__all__ = ["usable_cpus", "decode_threads", "loader_workers"]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def decode_threads() -> int:
    """Threads for decoding images in this process (Pillow releases the GIL): one per CPU, at most 8."""
    return min(8, usable_cpus())


def loader_workers(device=None, *, device_decode: bool = False, leave_one_cpu: bool = False) -> int:
    """DataLoader worker processes that decode images for a model on ``device``.

    - ``leave_one_cpu`` (train, eval): one CPU is left to the main process, at most 8;
    - the model on a CPU: one per CPU, at most 8 (the model needs the cores too);
    - the model on a GPU: every CPU, at most 32, since the model barely uses the CPU and
      decoding is the bottleneck (benchmarks/RESULTS.md: on a 16-core H200 box 16 workers
      embedded 2.3x faster than 8);
    - JPEGs decoded on the GPU: half the CPUs, as the workers then only read and hash files
      and the process feeding nvJPEG needs CPU time of its own (8 workers beat 16 by 28% there).
    """
    cpus = usable_cpus()
    if leave_one_cpu:
        return max(1, min(8, cpus - 1))
    if device_decode:
        return max(2, min(16, cpus // 2))
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        return max(1, min(32, cpus))
    return max(1, min(8, cpus))
