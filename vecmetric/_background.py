"""``read_ahead``: iterate in a background thread, a few items ahead of the consumer."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")
_DONE = object()


def read_ahead(items: Iterable[T], depth: int = 2, name: str = "vecmetric-read-ahead") -> Iterator[T]:
    """Yield from ``items``, produced up to ``depth`` items ahead in a thread.

    Reading and decoding (Parquet batches, JPEGs on the GPU) then overlaps the consumer's work
    whenever either side releases the GIL. An exception raised while producing is re-raised
    here, in order. When the consumer stops early (``close()``, an exception, garbage
    collection), the producer stops at its next item and its thread has ended by the time
    this generator is closed.
    """
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return  # the consumer left
            put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((_DONE, exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
