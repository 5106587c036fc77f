"""``BatchingEncoder``: concurrent image embeddings from many threads share model runs.

A server embeds one uploaded image per request, from many threads at once. Run one by one, the
requests queue for the cores; run side by side, each run's threads fight the others' for them.
Batched, the model runs once for several images, which costs less per image (onnxruntime: 6 ms per
image in a batch of 32 against 13 ms alone on two cores, benchmarks/RESULTS.md). No thread of its
own: the first caller to find the model idle runs it for everything queued by then, the others
wait for their rows, and whoever waits longest runs the next batch (so the model is never idle
while images wait, and no caller works for others more than once).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["BatchingEncoder"]


class _Pending:
    __slots__ = ("batch", "result", "error", "done")

    def __init__(self, batch):
        self.batch, self.result, self.error, self.done = batch, None, None, False


class BatchingEncoder:
    """Wraps an encoder: ``embed_tensors`` calls from several threads are run together; the rest passes through.

    Args:
        encoder: an encoder with ``embed_tensors`` (an ``OnnxEncoder`` or a torch ``Encoder``).
        max_batch: the most images one model run takes.

    Attributes:
        runs, images: model runs so far and images they embedded (``images / runs`` is the mean batch).
    """

    def __init__(self, encoder, max_batch: int = 16):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.encoder = encoder
        self.max_batch = max_batch
        self.runs = self.images = 0
        self._queue: list[_Pending] = []
        self._running = False
        self._cond = threading.Condition()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def embed_tensors(self, batch) -> Any:
        """``encoder.embed_tensors(batch)``, run in one model call with other threads' images where they wait too.

        Raises:
            whatever the encoder raises for this batch (a joint run that fails is retried batch by batch,
            so one caller's bad input never fails the others).
        """
        import numpy as np

        mine = _Pending(np.ascontiguousarray(batch))
        with self._cond:
            self._queue.append(mine)
            while self._running and not mine.done:
                self._cond.wait()
            if mine.done:
                return self._outcome(mine)
            self._running = True
            taken = self._take(mine)
        try:
            self._run(taken)
        finally:
            with self._cond:
                for item in taken:  # only when the run itself was interrupted (KeyboardInterrupt, SystemExit)
                    if not item.done:
                        item.error, item.done = RuntimeError("the model run was interrupted"), True
                self._running = False
                self._cond.notify_all()
        return self._outcome(mine)

    def _take(self, mine: _Pending) -> list[_Pending]:
        """``mine`` first, then the oldest waiting batches while they fit in ``max_batch`` images (under the lock)."""
        self._queue.remove(mine)
        taken, size = [mine], len(mine.batch)
        while self._queue and size + len(self._queue[0].batch) <= self.max_batch:
            item = self._queue.pop(0)
            taken.append(item)
            size += len(item.batch)
        return taken

    def _run(self, taken: list[_Pending]) -> None:
        """Embed the taken batches and hand each its rows, or its error."""
        import numpy as np

        try:
            vectors = self.encoder.embed_tensors(np.concatenate([item.batch for item in taken]))
        except Exception as exc:  # noqa: BLE001 - handed to the caller whose batch it was
            if len(taken) == 1:
                taken[0].error, taken[0].done = exc, True
            else:
                for item in taken:
                    self._run([item])
            return
        start = 0
        for item in taken:
            item.result, item.done = vectors[start : start + len(item.batch)], True
            start += len(item.batch)
        self.runs += 1
        self.images += start

    @staticmethod
    def _outcome(item: _Pending) -> Any:
        if item.error is not None:
            raise item.error
        return item.result
