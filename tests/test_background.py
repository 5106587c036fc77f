"""``read_ahead``: errors reach the consumer in order, and the producer stops when the consumer does."""

import threading

import pytest

from vecmetric._background import read_ahead


def test_background_iteration_passes_errors_and_stops_with_the_consumer():
    def failing():
        yield 1
        raise ValueError("worker broke")

    got = []
    with pytest.raises(ValueError, match="worker broke"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    consumer = read_ahead(endless(), depth=2, name="test-read-ahead")
    assert [next(consumer) for _ in range(3)] == [0, 1, 2]
    consumer.close()  # joins the producer: no waiting, no polling
    assert not any(t.name == "test-read-ahead" for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2  # it stopped reading ahead once the consumer left
