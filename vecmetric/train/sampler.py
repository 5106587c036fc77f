"""The M-per-class batch sampler: every batch holds ``m`` images of each of ``batch_size / m`` classes.

Like pytorch-metric-learning's ``MPerClassSampler`` (classes drawn uniformly, ``m``
distinct images each) but driven by a generator seeded from ``(seed, epoch)``
instead of NumPy's global state. That makes three things exact: a resumed run sees
the same batches as an uninterrupted one, every DDP rank agrees on the global order
and takes its own share, and each sample carries the seed of its augmentation.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

from ..errors import TrainError

__all__ = ["MPerClassBatchSampler", "check_sampler_options"]


def check_sampler_options(class_sizes: dict[str, int], m_per_class: int, batch_size: int) -> None:
    """Refuse batch settings the data cannot fill.

    Raises:
        TrainError: ``m`` below 2 or larger than a class, a batch size that is not a multiple of ``m``,
            fewer than 2 classes per batch, or more classes per batch than there are.
    """
    if m_per_class < 2:
        raise TrainError(f"--m-per-class must be at least 2 (a positive pair), not {m_per_class}")
    if batch_size % m_per_class:
        raise TrainError(f"--batch-size {batch_size} must be a multiple of --m-per-class {m_per_class}")
    per_batch = batch_size // m_per_class
    if per_batch < 2:
        raise TrainError(
            f"--batch-size {batch_size} holds a single class of {m_per_class} images; triplets need a second class",
            hint=f"use --batch-size {2 * m_per_class} or more",
        )
    if per_batch > len(class_sizes):
        raise TrainError(
            f"a batch of {batch_size} with --m-per-class {m_per_class} needs {per_batch} classes but training has {len(class_sizes)}",
            hint="lower --batch-size or raise --m-per-class",
        )
    small = sorted((size, name) for name, size in class_sizes.items() if size < m_per_class)
    if small:
        size, name = small[0]
        raise TrainError(
            f"--m-per-class {m_per_class} is larger than {len(small)} training class(es), e.g. {name} with {size} images",
            hint=f"lower --m-per-class to {size} or remove the smallest classes",
        )


class MPerClassBatchSampler:
    """Batches of ``(index, sample_seed)`` with ``m`` images from each of ``batch_size // m`` classes.

    Args:
        labels: the class of every dataset item.
        m_per_class: images per class in a batch; every class must have at least this many.
        batch_size: items per batch on each device.
        seed: the run's seed.
        rank, world_size: this process's share under DDP: the global sequence of
            ``steps * world_size`` batches is dealt round-robin.
        steps_per_epoch: batches each rank yields per epoch (default: one pass over the data, globally).
    """

    def __init__(
        self,
        labels: Sequence[int],
        m_per_class: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        steps_per_epoch: int | None = None,
    ):
        self.m = int(m_per_class)
        self.batch_size = int(batch_size)
        self.classes_per_batch = self.batch_size // self.m
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        by_class: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_class[int(label)].append(index)
        self.by_class = [by_class[label] for label in sorted(by_class)]
        self.steps = steps_per_epoch or max(1, len(labels) // (self.batch_size * self.world_size))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        import numpy as np

        rng = np.random.default_rng([self.seed, self.epoch])
        queues = [list(rng.permutation(members)) for members in self.by_class]
        cursors = [0] * len(queues)
        for batch_number in range(self.steps * self.world_size):
            chosen = rng.choice(len(queues), self.classes_per_batch, replace=False)
            batch: list[int] = []
            for cls in chosen:
                if cursors[cls] + self.m > len(queues[cls]):
                    queues[cls] = list(rng.permutation(self.by_class[cls]))
                    cursors[cls] = 0
                batch.extend(queues[cls][cursors[cls] : cursors[cls] + self.m])
                cursors[cls] += self.m
            sample_seeds = rng.integers(0, 2**31 - 1, size=len(batch))
            if batch_number % self.world_size == self.rank:
                yield [(int(i), int(s)) for i, s in zip(batch, sample_seeds)]
